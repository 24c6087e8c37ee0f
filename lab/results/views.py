"""Result pages: worklist per bench, manual result entry, review and verification, correction.

The rules (flags, critical call documentation, who may verify) are the results service's;
these routes parse forms, call it, and show its refusals next to the fields they concern.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.deps import SessionDep
from lab.errors import InvalidInput, LabError, NotFound
from lab.qc import queries as qc_queries
from lab.results import queries as result_queries
from lab.results import service as results
from lab.results.state import ResultState
from lab.specimens import queries as work_lists
from lab.specimens import service as specimens
from lab.tables import (
    SPECIMEN_FINISHED,
    TEST_PENDING,
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    Specimen,
    TestStatus,
)
from lab.timeutil import OSLO, as_utc, utcnow
from lab.web.auth import (
    CorrectResultsForm,
    EnterResultsForm,
    EnterResultsPage,
    ReadPatientDataPage,
    VerifyResultsForm,
)
from lab.web.pages import (
    PostedForm,
    error_message,
    field_errors,
    notice_of,
    notice_text,
    page_router,
    redirect_after_post,
    show_form_again,
)
from lab.web.templating import render, render_block

router = page_router()

# The review queue shows this many results a page, stat first then oldest; the page says how
# many wait in all and links to the next page (keyset: `after` is the last result's sort key).
REVIEW_LIMIT = 100
# A bench's worklist shows the first tubes in work order (stat, then oldest); more wait below.
WORKLIST_TUBES = 200


# --- worklist -------------------------------------------------------------------------------


@router.get("/worklist")
def worklist_page(
    request: Request,
    session: SessionDep,
    actor: EnterResultsPage,
    bench: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    cursor = work_lists.WorklistCursor.parse(after) if after else None
    container = bench or None
    page = work_lists.worklist_lines(
        session, container=container, limit=WORKLIST_TUBES, after=cursor
    )
    return render(
        request,
        "results/worklist.html",
        {
            "bench": bench,
            "benches": work_lists.benches(session),
            "entries": page.lines,
            # A true count of the bench's tubes in the lab, from the partial index of open tubes.
            "in_lab": work_lists.count_in_lab_unfinished(session, container=container),
            "next_cursor": page.next_cursor.text() if page.next_cursor else None,
            "first_page": cursor is None,
            "now": utcnow(),
            "qc_locks": qc_queries.active_locks(session),
            "qc_alarms": qc_queries.active_alarms(session),
        },
    )


# --- manual result entry --------------------------------------------------------------------


def _entry_context(
    session: Session,
    specimen: Specimen,
    actor: Actor,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    patient = session.get(Patient, specimen.patient_id)
    order = session.get(Order, specimen.order_id)
    if patient is None or order is None:
        raise NotFound(f"{specimen.accession_number} has no order or patient")
    existing = {
        r.ordered_test_id: r
        for r in result_queries.for_specimen(session, specimen.accession_number, actor=actor)
    }
    rows = []
    for ordered in specimens.tests_of(session, specimen):
        if ordered.status == TestStatus.CANCELLED:
            continue
        interval = results.reference_for(ordered.test, patient, specimen)
        low, high = (interval.low, interval.high) if interval else (None, None)
        rows.append(
            {
                "ordered": ordered,
                "test": ordered.test,
                "low": low,
                "high": high,
                "result": existing.get(ordered.id),
                "pending": ordered.status in TEST_PENDING,
            }
        )
    return {
        "specimen": specimen,
        "patient": patient,
        "order": order,
        "rows": rows,
        "values": values or {},
        "errors": errors or {},
        "open_specimen": specimen.status not in SPECIMEN_FINISHED,
    }


@router.get("/specimens/{accession_number}/results")
def entry_page(
    request: Request, accession_number: str, session: SessionDep, actor: EnterResultsPage
) -> Response:
    specimen = specimens.read(session, accession_number, actor=actor)
    context = _entry_context(session, specimen, actor)
    context["notice"] = notice_of(request)
    return render(request, "results/entry.html", context)


@router.post("/specimens/{accession_number}/results")
def enter_results(
    request: Request,
    accession_number: str,
    session: SessionDep,
    actor: EnterResultsForm,
    form: PostedForm,
) -> Response:
    """Every filled-in value is recorded, or none: a form with an error is shown again whole."""
    specimen = specimens.get_by_accession(session, accession_number)
    values: dict[str, str] = {}
    for ordered in specimens.pending_tests(session, specimen):
        entered = form.get(f"value_{ordered.test.code}")
        if isinstance(entered, str) and entered.strip():
            values[ordered.test.code] = entered.strip()
    errors: dict[str, str] = {}
    if not values:
        errors["_form"] = "entry.nothing"
    for code, value in values.items():
        try:
            results.record(
                session,
                actor=actor,
                measurement=results.Measurement(
                    accession_number=specimen.accession_number,
                    test_code=code,
                    value=value,
                    instrument="manual",
                    operator=actor.username,
                ),
            )
        except LabError as exc:
            errors[code] = error_message(request, exc)
    if errors:
        return show_form_again(
            request,
            session,
            template="results/entry.html",
            read=lambda: _entry_context(
                session,
                specimens.read(session, accession_number, actor=actor),
                actor,
                values=values,
                errors=errors,
            ),
            status_code=422,
        )
    return redirect_after_post(f"/specimens/{specimen.accession_number}/results", "results_saved")


# --- review and verification ----------------------------------------------------------------


def _delta(result: Result, previous: Result | None) -> tuple[Decimal | None, Decimal | None]:
    """The change from the previous released result, absolute and in per cent."""
    if previous is None or result.value_numeric is None or previous.value_numeric is None:
        return None, None
    change = result.value_numeric - previous.value_numeric
    if previous.value_numeric == 0:
        return change, None
    percent = (change / abs(previous.value_numeric) * 100).quantize(Decimal("1"))
    return change, percent


def review_line(
    session: Session, result: Result, previous: Result | bool | None = False
) -> dict[str, Any]:
    """One line of the review table; `previous` when the caller has already looked it up."""
    if previous is False:
        previous = result_queries.previous_released(session, result)
    assert previous is not True
    change, percent = _delta(result, previous)
    current = result.versions[-1]
    judgement = current.judgement or {}
    return {
        "delta": judgement.get("delta"),
        "implausible": bool(judgement.get("implausible")),
        "measurements": len(result.measurements),
        "result": result,
        "test": session.get(LabTest, result.test_id),
        "current": current,
        "previous": previous,
        "change": change,
        "percent": percent,
        "critical": ResultState.of(result).critical,
        "unremarkable": result_queries.is_unremarkable(result),
    }


def _now_for_input() -> str:
    """Now as a `datetime-local` input wants it, in Oslo time."""
    return utcnow().astimezone(OSLO).strftime("%Y-%m-%dT%H:%M")


def review_context(
    session: Session,
    actor: Actor,
    *,
    after: result_queries.ReviewCursor | None = None,
    specimen_id: int | None = None,
    errors: dict[int, str] | None = None,
    values: dict[int, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The queue page (or, with `specimen_id`, the one tube a partial update redraws)."""
    queue = result_queries.read_review_queue(
        session, actor=actor, limit=REVIEW_LIMIT + 1, after=after, specimen_id=specimen_id
    )
    more = specimen_id is None and len(queue.results) > REVIEW_LIMIT
    shown_results = queue.results[:REVIEW_LIMIT] if specimen_id is None else queue.results
    previous = result_queries.previous_released_many(session, shown_results)
    groups: dict[int, dict[str, Any]] = {}
    for result in shown_results:
        group = groups.get(result.specimen_id)
        if group is None:
            specimen = queue.tubes[result.specimen_id]
            group = {
                "specimen": specimen,
                "patient": queue.patients.get(result.patient_id),
                "order": queue.orders.get(specimen.order_id),
                "lines": [],
            }
            groups[result.specimen_id] = group
        group["lines"].append(review_line(session, result, previous[result.id]))
    for group in groups.values():
        group["critical_lines"] = [line for line in group["lines"] if line["critical"]]
        group["unremarkable"] = [line for line in group["lines"] if line["unremarkable"]]
    shown = {result.id for result in shown_results}
    total, critical = result_queries.awaiting_review_counts(session)
    # The further measurements are listed below the queue on the whole page, not in a tube's block.
    further = [
        {"result": result, "measurement": measurement, "test": session.get(LabTest, result.test_id)}
        for result, measurement in (
            result_queries.further_measurements(session) if specimen_id is None else []
        )
    ]
    return {
        "further": further,
        "groups": list(groups.values()),
        # A refusal for a result no longer in the queue (verified meanwhile) still shows.
        "stray_errors": [text for rid, text in (errors or {}).items() if rid not in shown],
        "count": len(shown_results),
        "total": total,
        "total_critical": critical,
        "next_cursor": (
            result_queries.ReviewCursor.of(shown_results[-1]).text()
            if more and shown_results
            else None
        ),
        "first_page": after is None,
        "errors": errors or {},
        "values": values or {},
        # A refused fix (replace, rerun, discard) by result id, with what was typed.
        "fix_errors": {},
        "fix_values": {},
        "now_input": _now_for_input(),
    }


PARTIAL_HEADER = "x-lab-partial"


def wants_partial(request: Request) -> bool:
    return request.headers.get(PARTIAL_HEADER) == "review"


def tube_block(
    request: Request,
    session: Session,
    actor: Actor,
    specimen_id: int,
    *,
    errors: dict[int, str] | None = None,
    values: dict[int, dict[str, str]] | None = None,
    notice: str | None = None,
    notice_count: str = "",
    status_code: int = 200,
    **shown: Any,
) -> Response:
    """The tube's block of the review page after an action, with the new count in a header.

    An empty block means nothing of that tube waits any more; the page's script removes it and
    keeps the reviewer's place in the list.
    """
    context = review_context(session, actor, specimen_id=specimen_id, errors=errors, values=values)
    group = context["groups"][0] if context["groups"] else None
    context.update(group=group, notice=notice, verified_count=notice_count, **shown)
    response = render_block(
        request, "results/review.html", "review_group", context, status_code=status_code
    )
    response.headers["X-Lab-Count"] = str(context["total"])
    response.headers["X-Lab-Notice"] = quote(
        notice_text(request, notice, count=notice_count) if notice else ""
    )
    return response


@router.get("/review")
def review_page(
    request: Request,
    session: SessionDep,
    actor: ReadPatientDataPage,
    after: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    cursor = result_queries.ReviewCursor.parse(after) if after else None
    context = review_context(session, actor, after=cursor)
    context["notice"] = notice_of(request)
    context["verified_count"] = request.query_params.get("count", "")
    return render(request, "results/review.html", context)


def _critical_call(
    person: str, notified_at: str, read_back: str
) -> results.CriticalNotification | None:
    """The documented telephone call of a critical result, or None when none was filled in."""
    if not person.strip() and not read_back:
        return None
    try:
        moment = datetime.fromisoformat(notified_at.strip())
    except ValueError:
        raise InvalidInput.field(
            "notified_at", "give the time of the call as date and time", code="call_time_invalid"
        ) from None
    return results.CriticalNotification(
        notified_person=person.strip(), notified_at=as_utc(moment), read_back=read_back == "yes"
    )


@router.post("/results/{result_id}/verify")
def verify(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: VerifyResultsForm,
    comment: Annotated[str, Form()] = "",
    notified_person: Annotated[str, Form()] = "",
    notified_at: Annotated[str, Form()] = "",
    read_back: Annotated[str, Form()] = "",
) -> Response:
    specimen_id = session.scalar(select(Result.specimen_id).where(Result.id == result_id))
    try:
        critical = _critical_call(notified_person, notified_at, read_back)
        results.verify(
            session, actor=actor, result_id=result_id, critical=critical, comment=comment.strip()
        )
    except LabError as exc:
        kept = {
            "comment": comment,
            "notified_person": notified_person,
            "notified_at": notified_at,
            "read_back": read_back,
        }
        errors = {result_id: error_message(request, exc)}
        if wants_partial(request) and specimen_id is not None:
            session.rollback()
            return tube_block(
                request,
                session,
                actor,
                specimen_id,
                errors=errors,
                values={result_id: kept},
                status_code=exc.http_status,
            )
        return show_form_again(
            request,
            session,
            template="results/review.html",
            read=lambda: review_context(session, actor, errors=errors, values={result_id: kept}),
            status_code=exc.http_status,
            verified_count="",
        )
    if wants_partial(request) and specimen_id is not None:
        return tube_block(request, session, actor, specimen_id, notice="verified")
    return redirect_after_post("/review", "verified")


@router.post("/specimens/{accession_number}/verify-unremarkable")
def verify_unremarkable(
    request: Request, accession_number: str, session: SessionDep, actor: VerifyResultsForm
) -> Response:
    """Verify every result of the specimen that has no flag of its own or of the analyser."""
    verified = results.verify_unremarkable(session, actor=actor, accession_number=accession_number)
    notice = "verified_many" if verified else "verified_none"
    if wants_partial(request):
        specimen = specimens.get_by_accession(session, accession_number)
        return tube_block(
            request, session, actor, specimen.id, notice=notice, notice_count=str(len(verified))
        )
    if not verified:
        return redirect_after_post("/review", "verified_none")
    return redirect_after_post("/review", "verified_many", count=str(len(verified)))


@router.post("/specimens/{accession_number}/critical-call")
def critical_call(
    request: Request,
    accession_number: str,
    session: SessionDep,
    actor: VerifyResultsForm,
    form: PostedForm,
    notified_person: Annotated[str, Form()] = "",
    notified_at: Annotated[str, Form()] = "",
    read_back: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    """One telephone call that covered several critical results of the tube: documented once,
    and each result chosen is verified with that same record, all or none."""
    specimen = specimens.get_by_accession(session, accession_number)
    chosen = [int(v) for v in form.getlist("result_id") if isinstance(v, str) and v.isdigit()]
    try:
        verified = results.verify_with_call(
            session,
            actor=actor,
            specimen_id=specimen.id,
            result_ids=chosen,
            critical=_critical_call(notified_person, notified_at, read_back) if chosen else None,
            comment=comment.strip(),
        )
    except LabError as exc:
        session.rollback()
        kept = {
            "notified_person": notified_person,
            "notified_at": notified_at,
            "read_back": read_back,
            "comment": comment,
        }
        errors = {-specimen.id: error_message(request, exc)}
        if wants_partial(request):
            return tube_block(
                request,
                session,
                actor,
                specimen.id,
                errors=errors,
                values={-specimen.id: kept},
                status_code=exc.http_status,
            )
        context = review_context(session, actor, errors=errors, values={-specimen.id: kept})
        context.update(notice=None, verified_count="")
        return render(request, "results/review.html", context, status_code=exc.http_status)
    if wants_partial(request):
        return tube_block(
            request,
            session,
            actor,
            specimen.id,
            notice="verified_many",
            notice_count=str(len(verified)),
        )
    return redirect_after_post("/review", "verified_many", count=str(len(verified)))


# --- one result: versions and correction ----------------------------------------------------


def result_context(session: Session, result: Result) -> dict[str, Any]:
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    ordered = session.get(OrderedTest, result.ordered_test_id)
    return {
        "line": review_line(session, result, result_queries.previous_released(session, result)),
        "specimen": specimen,
        "patient": session.get(Patient, result.patient_id),
        "order": session.get(Order, ordered.order_id) if ordered else None,
        "versions": list(reversed(result.versions)),
        "measurements": [
            {"measurement": m, "reported": m.id == result.versions[-1].measurement_id}
            for m in result.measurements
        ],
        "waiting": any(m.after_release and m.reviewed_at is None for m in result.measurements),
        "choose_error": "",
        "correct_errors": {},
        "correct_values": {"value": "", "reason": "", "comment": ""},
        "fix_errors": {},
        "fix_values": {},
    }


@router.get("/results/{result_id}")
def result_page(
    request: Request, result_id: int, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    result = result_queries.read(session, result_id, actor=actor)
    context = result_context(session, result)
    context["notice"] = notice_of(request)
    return render(request, "results/result.html", context)


@router.post("/results/{result_id}/correct")
def correct(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: CorrectResultsForm,
    value: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
) -> Response:
    try:
        results.correct(
            session,
            actor=actor,
            result_id=result_id,
            value=value,
            reason=reason.strip(),
            comment=comment.strip(),
        )
    except LabError as exc:
        return show_form_again(
            request,
            session,
            template="results/result.html",
            read=lambda: result_context(
                session, result_queries.read(session, result_id, actor=actor)
            ),
            status_code=exc.http_status,
            correct_errors=field_errors(request, exc),
            correct_values={"value": value, "reason": reason, "comment": comment},
        )
    return redirect_after_post(f"/results/{result_id}", "corrected")


@router.post("/results/{result_id}/choose")
def choose(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: VerifyResultsForm,
    measurement_id: Annotated[int, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Report another measurement of the test (of a released result: a correction)."""
    try:
        results.choose(
            session,
            actor=actor,
            result_id=result_id,
            measurement_id=measurement_id,
            reason=reason.strip(),
        )
    except LabError as exc:
        return _result_again(request, session, actor, result_id, exc)
    return redirect_after_post(f"/results/{result_id}", "measurement_chosen")


@router.post("/results/{result_id}/set-aside")
def set_aside(
    request: Request,
    result_id: int,
    session: SessionDep,
    actor: VerifyResultsForm,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Keep the released value: the further measurements have been looked at."""
    try:
        results.set_aside(session, actor=actor, result_id=result_id, reason=reason.strip())
    except LabError as exc:
        return _result_again(request, session, actor, result_id, exc)
    return redirect_after_post(f"/results/{result_id}", "measurements_reviewed")


def _result_again(
    request: Request, session: Session, actor: Actor, result_id: int, exc: LabError
) -> Response:
    return show_form_again(
        request,
        session,
        template="results/result.html",
        read=lambda: result_context(session, result_queries.read(session, result_id, actor=actor)),
        status_code=exc.http_status,
        choose_error=error_message(request, exc),
    )
