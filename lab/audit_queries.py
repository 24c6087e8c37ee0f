"""Reading the audit trail: by person, action, patient and time, newest first, keyset-paged.

Writing stays in lab/audit.py; this module only finds rows. Counting a filtered trail is exact
(`count_events`), so a page can say how many rows match, not just that there are more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lab.tables import AuditEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    actor_name: str = ""
    action: str = ""  # a prefix: `read.` finds every read of patient data
    patient_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


Query = TypeVar("Query", bound=Select[Any])


def _filtered(query: Query, wanted: AuditFilter) -> Query:
    if wanted.actor_name:
        query = query.where(AuditEvent.actor_name == wanted.actor_name)
    if wanted.action:
        query = query.where(AuditEvent.action.startswith(wanted.action, autoescape=True))
    if wanted.patient_id is not None:
        query = query.where(AuditEvent.patient_id == wanted.patient_id)
    if wanted.since is not None:
        query = query.where(AuditEvent.at >= wanted.since)
    if wanted.until is not None:
        query = query.where(AuditEvent.at < wanted.until)
    return query


def find_events(
    session: Session, wanted: AuditFilter, *, before_id: int | None = None, limit: int = 100
) -> list[AuditEvent]:
    """Newest first (ids grow with time); `before_id` pages back."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list(session.scalars(_filtered(query, wanted)))


def count_events(session: Session, wanted: AuditFilter) -> int:
    query = select(func.count()).select_from(AuditEvent)
    return session.scalar(_filtered(query, wanted)) or 0


def readers_of_patient(session: Session, patient_id: int) -> list[tuple[str, int, datetime]]:
    """Who has seen this patient's data: each person (or system), how often, and last when."""
    query = (
        select(AuditEvent.actor_name, func.count(), func.max(AuditEvent.at))
        .where(AuditEvent.patient_id == patient_id, AuditEvent.action.startswith("read."))
        .group_by(AuditEvent.actor_name)
        .order_by(func.max(AuditEvent.at).desc())
    )
    return [(name, n, last) for name, n, last in session.execute(query).tuples()]
