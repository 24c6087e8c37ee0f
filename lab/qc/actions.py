"""Corrective actions on QC runs: what a person did about a rejected run (or a warning) - a new
vial, a calibration, a service call - written down against the run (ISO 15189:2022 7.3.7.2 asks
that action on QC failures be recorded).

An action is an entry of the append-only audit trail (`qc.run.action`, the run as its entity, the
text as its detail): it can be added but never changed or removed, and the time and the person
are the audit row's own. The chart page shows them with the run and the monthly report lists the
month's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.errors import InvalidInput, NotFound
from lab.tables import AuditEvent
from lab.tables.qc import QcRun

ACTION = "qc.run.action"
_ENTITY = "qc_run"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAction:
    run_id: int
    at: datetime
    by: str
    text: str


def _of(row: AuditEvent) -> RunAction:
    return RunAction(run_id=int(row.entity_id), at=row.at, by=row.actor_name, text=row.detail)


def add_action(session: Session, *, actor: Actor, run_id: int, text: str) -> RunAction:
    """Write down what was done about a run (at least 10 characters); audited, never changed."""
    run = session.get(QcRun, run_id)
    if run is None:
        raise NotFound(f"no QC run {run_id}")
    text = text.strip()
    if len(text) < 10:
        raise InvalidInput.field(
            "text", "say what was done (at least 10 characters)", code="qc_action_short"
        )
    row = AuditEvent(
        **audit.row(
            actor=actor,
            action=ACTION,
            entity_type=_ENTITY,
            entity_id=run.id,
            after={"instrument": run.instrument, "test_id": run.test_id, "status": run.status},
            detail=text,
        )
    )
    session.add(row)
    session.flush()
    return _of(row)


def actions_of(session: Session, run_ids: Iterable[int]) -> dict[int, list[RunAction]]:
    """The actions written down against these runs, oldest first, by run."""
    ids = [str(i) for i in run_ids]
    if not ids:
        return {}
    rows = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.action == ACTION,
            AuditEvent.entity_type == _ENTITY,
            AuditEvent.entity_id.in_(ids),
        )
        .order_by(AuditEvent.id)
    )
    found: dict[int, list[RunAction]] = {}
    for row in rows:
        found.setdefault(int(row.entity_id), []).append(_of(row))
    return found


def actions_between(
    session: Session, *, start: datetime, end: datetime
) -> list[tuple[RunAction, QcRun]]:
    """The actions written down in a period, with their runs, oldest first."""
    query = (
        select(AuditEvent, QcRun)
        .join(QcRun, QcRun.id == AuditEvent.entity_id.cast(QcRun.id.type))
        .where(AuditEvent.action == ACTION, AuditEvent.at >= start, AuditEvent.at < end)
        .order_by(AuditEvent.id)
    )
    return [(_of(row), run) for row, run in session.execute(query).tuples()]
