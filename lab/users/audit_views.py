"""The audit trail page: who did what, when, to which record; filtered, counted, keyset-paged.

For the roles that may read the audit (lab physicians, administrators). Reading the trail is
itself audited when it is filtered on one patient, since that shows whose data was looked at.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request, Response

from lab import audit
from lab.audit import Actor
from lab.audit_queries import AuditFilter, count_events, find_events
from lab.deps import SessionDep
from lab.timeutil import OSLO
from lab.users.roles import Permission
from lab.web.auth import page_requires
from lab.web.pages import page_router
from lab.web.templating import render

router = page_router()

PAGE_SIZE = 100
ReadAuditPage = Annotated[Actor, Depends(page_requires(Permission.READ_AUDIT))]


def _day(text: str) -> datetime | None:
    """A `YYYY-MM-DD` from a date input, as the start of that day in Oslo."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=OSLO) if text else None
    except ValueError:
        return None


@router.get("/audit")
def audit_trail(
    request: Request,
    session: SessionDep,
    actor: ReadAuditPage,
    user: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    patient: Annotated[int | None, Query(ge=1)] = None,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    last_day = _day(until)
    wanted = AuditFilter(
        actor_name=user.strip(),
        action=action.strip(),
        patient_id=patient,
        since=_day(since),
        until=last_day + timedelta(days=1) if last_day else None,
    )
    found = find_events(session, wanted, before_id=before, limit=PAGE_SIZE + 1)
    events = found[:PAGE_SIZE]
    if patient is not None:
        audit.record_read(
            session, actor=actor, patient_id=patient, what="audit_trail", entity_id=patient
        )
    total = count_events(session, wanted)
    query = {
        "user": user,
        "action": action,
        "patient": patient or "",
        "since": since,
        "until": until,
    }
    return render(
        request,
        "users/audit.html",
        {
            "events": events,
            "total": total,
            "filter": query,
            "next_before": events[-1].id if len(found) > PAGE_SIZE and events else None,
            "first_page": before is None,
        },
    )
