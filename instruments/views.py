"""Analyser pages: the state of each analyser, the queue of results that matched no ordered test
(resolve onto a specimen and test, or discard with a reason) and the QC results received.

The rules are instruments/service.py's; each action there is audited. Reading the queue needs
the right to see patient data (a value belongs to someone); acting on it needs
`resolve_unmatched`. The queue pages by keyset and says how many wait in all.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request, Response
from sqlalchemy.orm import Session

from instruments import service
from instruments.api import configs_and_runners
from lab.audit import Actor
from lab.deps import SessionDep
from lab.errors import LabError
from lab.users.roles import Permission
from lab.web.auth import form_requires, page_requires
from lab.web.pages import field_errors, notice_of, page_router, redirect_after_post
from lab.web.templating import render

router = page_router()

PAGE_SIZE = 50
ViewAnalysersPage = Annotated[Actor, Depends(page_requires(Permission.VIEW_ANALYSERS))]
ReadPatientDataPage = Annotated[Actor, Depends(page_requires(Permission.READ_PATIENT_DATA))]
ResolveUnmatchedForm = Annotated[Actor, Depends(form_requires(Permission.RESOLVE_UNMATCHED))]


@router.get("/analysers")
def analysers_page(request: Request, session: SessionDep, actor: ViewAnalysersPage) -> Response:
    configs, runners = configs_and_runners(request)
    waiting = service.open_unmatched_counts(session)
    analysers = []
    for config in configs:
        runner = runners.get(config.name)
        status = runner.status.as_dict() if runner is not None else None
        analysers.append(
            {
                "config": config,
                "status": status,
                "unmatched": waiting.get(config.name, 0),
                "transport": config.transport.describe(),
            }
        )
    return render(
        request,
        "analysers/analysers.html",
        {"analysers": analysers, "qc": service.list_qc(session, limit=25)},
    )


def _queue_context(
    session: Session,
    *,
    after: int | None,
    errors: dict[int, dict[str, str]] | None = None,
    values: dict[int, dict[str, str]] | None = None,
) -> dict[str, Any]:
    found = service.list_unmatched(session, limit=PAGE_SIZE + 1, after_id=after)
    rows = found[:PAGE_SIZE]
    return {
        "rows": rows,
        "total": service.count_unmatched(session),
        "next_after": rows[-1].id if len(found) > PAGE_SIZE and rows else None,
        "first_page": after is None,
        "errors": errors or {},
        "values": values or {},
    }


@router.get("/analysers/unmatched")
def unmatched_page(
    request: Request,
    session: SessionDep,
    actor: ReadPatientDataPage,
    after: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    context = _queue_context(session, after=after)
    service.note_read(session, actor=actor, rows=context["rows"])
    context["notice"] = notice_of(request)
    return render(request, "analysers/unmatched.html", context)


def _refused(
    request: Request, session: Session, unmatched_id: int, exc: LabError, kept: dict[str, str]
) -> Response:
    session.rollback()
    context = _queue_context(
        session,
        after=None,
        errors={unmatched_id: field_errors(request, exc)},
        values={unmatched_id: kept},
    )
    context["notice"] = None
    return render(request, "analysers/unmatched.html", context, status_code=exc.http_status)


@router.post("/analysers/unmatched/{unmatched_id}/resolve")
def resolve(
    request: Request,
    unmatched_id: int,
    session: SessionDep,
    actor: ResolveUnmatchedForm,
    accession_number: Annotated[str, Form()] = "",
    test_code: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    unit: Annotated[str, Form()] = "",
) -> Response:
    try:
        service.resolve(
            session,
            actor=actor,
            unmatched_id=unmatched_id,
            accession_number=accession_number.strip(),
            test_code=test_code,
            note=note.strip(),
            unit=unit.strip() or None,
        )
    except LabError as exc:
        kept = {
            "accession_number": accession_number,
            "test_code": test_code,
            "note": note,
            "unit": unit,
        }
        return _refused(request, session, unmatched_id, exc, kept)
    return redirect_after_post("/analysers/unmatched", "unmatched_resolved")


@router.post("/analysers/unmatched/{unmatched_id}/discard")
def discard(
    request: Request,
    unmatched_id: int,
    session: SessionDep,
    actor: ResolveUnmatchedForm,
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        service.discard(session, actor=actor, unmatched_id=unmatched_id, reason=reason)
    except LabError as exc:
        return _refused(request, session, unmatched_id, exc, {"reason": reason})
    return redirect_after_post("/analysers/unmatched", "unmatched_discarded")
