"""Fix before release from the review page or the result's page: replace, rerun, discard.

The forms sit under each result not yet verified (`lab.results.fixes` decides and checks the
roles again). From the review page a fix answers with the tube's block (a partial update, the
reviewer keeps their place); from the result's page with that page. A refusal stands next to
the form with what was typed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Form, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.deps import SessionDep
from lab.errors import LabError, NotFound
from lab.results import fixes
from lab.results import queries as result_queries
from lab.results.views import result_context, review_context, tube_block, wants_partial
from lab.tables import Result
from lab.users import service as users
from lab.users.roles import Permission
from lab.web.auth import EnterResultsForm, ReadPatientDataPage, VerifyResultsForm
from lab.web.pages import error_message, page_router, redirect_after_post, show_form_again
from lab.web.templating import render_block

router = page_router()


def _enters_for_patients(actor: EnterResultsForm) -> Actor:
    """A person who enters results and reads the patient's data (the review page's users)."""
    users.require(actor, Permission.READ_PATIENT_DATA)
    return actor


EntersForPatientsForm = Annotated[Actor, Depends(_enters_for_patients)]


def _fix(
    request: Request,
    session: Session,
    actor: Actor,
    result_id: int,
    *,
    back: str,
    kept: dict[str, str],
    notice: str,
    act: Callable[[], object],
) -> Response:
    """Do the fix; answer as the page it came from wants (the tube's block, the review page,
    or the result's page), with the refusal next to the form when it is refused."""
    specimen_id = session.scalar(select(Result.specimen_id).where(Result.id == result_id))
    if specimen_id is None:
        raise NotFound(f"no result {result_id}", code="result_unknown", params={"id": result_id})
    try:
        act()
    except LabError as exc:
        fix_errors = {result_id: error_message(request, exc)}
        fix_values = {result_id: kept}
        if wants_partial(request):
            session.rollback()
            return tube_block(
                request,
                session,
                actor,
                specimen_id,
                status_code=exc.http_status,
                fix_errors=fix_errors,
                fix_values=fix_values,
            )
        if back == "result":
            return show_form_again(
                request,
                session,
                template="results/result.html",
                read=lambda: result_context(
                    session, result_queries.read(session, result_id, actor=actor)
                ),
                status_code=exc.http_status,
                fix_errors=fix_errors,
                fix_values=fix_values,
            )
        return show_form_again(
            request,
            session,
            template="results/review.html",
            read=lambda: review_context(session, actor),
            status_code=exc.http_status,
            verified_count="",
            fix_errors=fix_errors,
            fix_values=fix_values,
        )
    if wants_partial(request):
        return tube_block(request, session, actor, specimen_id, notice=notice)
    if back == "result":
        return redirect_after_post(f"/results/{result_id}", notice)
    return redirect_after_post("/review", notice)


@router.get("/results/{result_id}/fix-form")
def fix_form(
    request: Request, result_id: int, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    """The fix forms of one result, for the review page that opens them (no patient data)."""
    result = session.get(Result, result_id)
    if result is None:
        raise NotFound(f"no result {result_id}", code="result_unknown", params={"id": result_id})
    return render_block(
        request,
        "results/fix.html",
        "fix_form",
        {"r": result, "current": result.versions[-1], "back": "review"},
    )


@router.post("/results/{result_id}/replace")
def replace(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: EntersForPatientsForm,
    value: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Report the right value instead of the wrong one (the old measurement is kept)."""
    return _fix(
        request,
        session,
        actor,
        result_id,
        back=back,
        kept={"kind": "replace", "value": value, "reason": reason},
        notice="result_replaced",
        act=lambda: fixes.replace(
            session, actor=actor, result_id=result_id, value=value, reason=reason
        ),
    )


@router.post("/results/{result_id}/rerun")
def rerun(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: EntersForPatientsForm,
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Send the test back to the analyser's worklist; the result waits for the new value."""
    return _fix(
        request,
        session,
        actor,
        result_id,
        back=back,
        kept={"kind": "rerun", "reason": reason},
        notice="rerun_requested",
        act=lambda: fixes.rerun(session, actor=actor, result_id=result_id, reason=reason),
    )


@router.post("/results/{result_id}/discard")
def discard(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: VerifyResultsForm,
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Withdraw the value and cancel the test; the record is told it could not be done."""
    return _fix(
        request,
        session,
        actor,
        result_id,
        back=back,
        kept={"kind": "discard", "reason": reason},
        notice="result_discarded",
        act=lambda: fixes.discard(session, actor=actor, result_id=result_id, reason=reason),
    )
