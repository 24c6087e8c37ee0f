"""The append-only audit trail: who (person or machine) did or saw what, when, before and after.

Rows are only ever inserted; the migration installs a trigger that refuses UPDATE and DELETE,
so not even a bug in this code can rewrite history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from lab.db import insert_rows
from lab.tables import AuditEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Whoever acts: a signed-in person, an analyser connection, or an interface account."""

    user_id: int | None
    username: str
    roles: frozenset[str] = field(default_factory=frozenset)
    channel: str = "api"  # api | ui | hl7 | astm | cli | job
    via: str = ""
    """The credential or connection used: `token:12`, `session:34`, `10.0.0.5:40312 [CN=...]`."""

    @classmethod
    def system(cls, channel: str = "job") -> Actor:
        return cls(user_id=None, username="system", channel=channel)


def row(
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object,
    patient_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One audit row as column values (for `record_rows`)."""
    return {
        "actor_user_id": actor.user_id,
        "actor_name": actor.username,
        "channel": actor.channel,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "patient_id": patient_id,
        "before": before,
        "after": after,
        "detail": detail,
        "via": actor.via[:200],
    }


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object,
    patient_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str = "",
) -> None:
    """Add an audit row to the caller's transaction: it commits or rolls back with the change."""
    session.add(
        AuditEvent(
            **row(
                actor=actor,
                action=action,
                entity_type=entity_type,
                entity_id=entity_id,
                patient_id=patient_id,
                before=before,
                after=after,
                detail=detail,
            )
        )
    )


def record_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Several audit rows in one INSERT, in the caller's transaction (the analysers' hot path)."""
    if rows:
        table: Table = AuditEvent.__table__  # type: ignore[assignment]
        insert_rows(session, table, rows)


def record_read(
    session: Session,
    *,
    actor: Actor,
    patient_id: int,
    what: str,
    entity_id: object,
    detail: str = "",
) -> None:
    """A look at patient data (`read.<what>`), in the caller's transaction."""
    record(
        session,
        actor=actor,
        action=f"read.{what}",
        entity_type=what.split(".")[0],
        entity_id=entity_id,
        patient_id=patient_id,
        detail=detail,
    )


def events_for_patient(session: Session, patient_id: int, *, limit: int = 500) -> list[AuditEvent]:
    """Everything done to and every look at one patient's data, newest first."""
    query = (
        select(AuditEvent)
        .where(AuditEvent.patient_id == patient_id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
