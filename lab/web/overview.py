"""The overview (`/`): what needs attention now, counted and listed, oldest and stat first.

The lists name specimens and tests, not patients, so the page can stay open on a wall screen;
the patient is one click away, on pages whose reads are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.deps import SessionDep
from lab.qc import queries as qc_queries
from lab.results import queries as result_queries
from lab.specimens import queries as work_lists
from lab.tables import Specimen
from lab.timeutil import utcnow
from lab.users.roles import Permission, permissions_of
from lab.web.auth import CurrentUserPage, page_requires
from lab.web.pages import page_router
from lab.web.templating import render

router = page_router()

LIST_LIMIT = 25
WALL_REFRESH_SECONDS = 60
ViewOverviewPage = Annotated[Actor, Depends(page_requires(Permission.VIEW_OVERVIEW))]
PRIORITIES = ("stat", "urgent", "routine")


def minutes_between(start: datetime | None, end: datetime) -> int | None:
    if start is None:
        return None
    return max(0, int((end - start).total_seconds() // 60))


def _work(session: Session) -> dict[str, Any]:
    now = utcnow()
    # Every count of the page in one statement (one round trip): true counts, each over a
    # partial index of open work, so they cost the open work's size, not the history's.
    asked = work_lists.open_work_counts(now)
    review_total_query, review_critical_query = result_queries.review_count_queries()
    asked.update(review_total=review_total_query, review_critical=review_critical_query)
    found = (
        session.execute(select(*(query.label(name) for name, query in asked.items())))
        .one()
        ._asdict()
    )
    counted = {name: int(found[name] or 0) for name in asked}
    counts = {p: counted[f"awaiting_{p}"] for p in PRIORITIES}
    review_total, review_critical = counted["review_total"], counted["review_critical"]
    critical_results = result_queries.critical_awaiting_review(session, limit=LIST_LIMIT)
    awaiting = work_lists.awaiting_receipt(session, limit=LIST_LIMIT)
    in_lab = work_lists.in_lab_unfinished(session, limit=LIST_LIMIT)
    # What the lists name, each read in one query (not one per line).
    tests_of = work_lists.tests_of_many(session, [s for s, _ in awaiting] + [s for s, _ in in_lab])
    lab_tests = work_lists.lab_tests(session, {result.test_id for result in critical_results})
    tubes = (
        {
            tube.id: tube
            for tube in session.scalars(
                select(Specimen).where(Specimen.id.in_({r.specimen_id for r in critical_results}))
            )
        }
        if critical_results
        else {}
    )
    critical = [
        {
            "result": result,
            "test": lab_tests.get(result.test_id),
            "specimen": tubes.get(result.specimen_id),
            "waited": minutes_between(result.recorded_at, now),
        }
        for result in critical_results
    ]
    work: dict[str, Any] = {
        "awaiting_counts": {p: counts.get(p, 0) for p in PRIORITIES},
        "awaiting_total": sum(counts.values()),
        "awaiting": [
            {
                "specimen": s,
                "order": o,
                "tests": tests_of[s.id],
                "waited": minutes_between(s.created_at, now),
            }
            for s, o in awaiting
        ],
        "in_lab_total": counted["in_lab"],
        "in_lab": [
            {
                "specimen": s,
                "order": o,
                "tests": tests_of[s.id],
                "waited": minutes_between(s.received_at, now),
            }
            for s, o in in_lab
        ],
        "qc_locks": qc_queries.active_locks(session),
        "qc_alarms": qc_queries.active_alarms(session),
        "review_total": review_total,
        "review_critical": review_critical,
        "critical": critical,
        "overdue": [
            {"ordered": t, "specimen": s, "late": minutes_between(due, now)}
            for t, s, due in work_lists.overdue_tests(session, now=now, limit=LIST_LIMIT)
        ],
        "overdue_total": counted["overdue_late"] + counted["overdue_waiting"],
        "limit": LIST_LIMIT,
        "now": now,
    }
    return work


@router.get("/")
def overview(request: Request, session: SessionDep, actor: CurrentUserPage) -> Response:
    if Permission.READ_PATIENT_DATA not in permissions_of(list(actor.roles)):
        if Permission.VIEW_OVERVIEW in permissions_of(list(actor.roles)):
            return RedirectResponse("/wall", status_code=303)  # the wall screen's own page
        # Admins keep users and the catalog; the lab's work lists are not theirs to see.
        return render(request, "overview/overview.html", {"work": None, "wall": False})
    work = _work(session)
    return render(request, "overview/overview.html", {"work": work, "wall": False})


@router.get("/wall")
def wall_screen(request: Request, session: SessionDep, actor: ViewOverviewPage) -> Response:
    """The overview for a screen on the wall: it refreshes itself, shows accession numbers and
    tests (no patient names, no links to patient data) and is read-only."""
    work = _work(session)
    return render(
        request,
        "overview/overview.html",
        {"work": work, "wall": True, "refresh_seconds": WALL_REFRESH_SECONDS},
    )
