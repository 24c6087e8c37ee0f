"""Order pages: search (accession number, order numbers, patient), the order, its printouts.

Search takes what a person has at hand: a scanned accession number goes straight to the
specimen, an order number to the order, and a fødselsnummer or name lists the patients.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.deps import SessionDep
from lab.errors import InvalidInput, LabError, NotFound
from lab.orders import service as orders
from lab.patients import service as patients
from lab.reports import DEFAULT_STOCK, render_labels, render_result_report
from lab.results import queries as result_queries
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import SPECIMEN_FINISHED, TEST_PENDING, Order, Patient, TestStatus
from lab.timeutil import utcnow
from lab.web.auth import (
    CancelOrdersForm,
    PlaceOrdersForm,
    ReadPatientDataForm,
    ReadPatientDataPage,
)
from lab.web.pages import (
    PostedForm,
    error_message,
    notice_of,
    page_router,
    redirect_after_post,
    show_form_again,
)
from lab.web.printouts import (
    lab_details,
    patient_details,
    pdf_response,
    result_report,
    signer_name,
    specimen_label,
)
from lab.web.templating import language_of, render

router = page_router()


@router.get("/search")
def search_page(request: Request, actor: ReadPatientDataPage) -> Response:
    """The search form. The term is never taken from the address: a fødselsnummer in a URL
    ends up in browser history, proxies and access logs, so the form is POSTed."""
    context: dict[str, Any] = {"q": "", "error": None, "orders": [], "patients": []}
    return render(request, "orders/search.html", context)


@router.post("/search")
def search(
    request: Request,
    session: SessionDep,
    actor: ReadPatientDataForm,
    q: Annotated[str, Form()] = "",
) -> Response:
    term = q.strip()
    context: dict[str, Any] = {"q": term, "error": None, "orders": [], "patients": []}
    if not term:
        return render(request, "orders/search.html", context)
    number = accession.normalise(term)
    if number.isdigit() and len(number) == accession.LENGTH:
        try:
            specimen = specimens.get_by_accession(session, number)
        except InvalidInput as exc:
            context["error"] = error_message(request, exc)
            return render(request, "orders/search.html", context, status_code=422)
        except NotFound:
            specimen = None
        if specimen is not None:
            return RedirectResponse(f"/specimens/{specimen.accession_number}", status_code=303)
    try:
        order = orders.get_by_filler(session, term)
    except NotFound:
        order = None
    if order is not None:
        return RedirectResponse(f"/orders/{order.filler_order_number}", status_code=303)
    by_placer = orders.search_by_placer(session, term, actor=actor)
    if len(by_placer) == 1:
        return RedirectResponse(f"/orders/{by_placer[0].filler_order_number}", status_code=303)
    try:
        found = patients.search(session, actor=actor, text=term)
    except InvalidInput as exc:
        found = []
        context["error"] = error_message(request, exc)
    context["orders"] = by_placer
    context["patients"] = [(p, orders.for_patient(session, p.id)) for p in found]
    return render(request, "orders/search.html", context)


def order_context(session: Session, order: Order, actor: Actor) -> dict[str, Any]:
    patient = session.get(Patient, order.patient_id)
    tubes = orders.specimens_of(session, order)
    found = result_queries.results_of_order(session, order)
    by_test = {r.ordered_test_id: r for r in found}
    tube_by_id = {s.id: s for s in tubes}
    timeline: list[dict[str, Any]] = [
        {"at": order.created_at, "event": "order.placed", "actor": order.source, "detail": ""}
    ]
    for tube in tubes:
        for event in tube.events:
            timeline.append(
                {
                    "at": event.at,
                    "event": event.event,
                    "actor": event.actor,
                    "detail": f"{tube.accession_number} {event.detail}".strip(),
                }
            )
    for ordered in order.tests:
        if ordered.cancelled_at is not None:
            timeline.append(
                {
                    "at": ordered.cancelled_at,
                    "event": "test.cancelled",
                    "actor": "",
                    "detail": f"{ordered.test.code}: {ordered.cancel_reason}",
                }
            )
    tests_by_id = {t.test_id: t.test.code for t in order.tests}
    for result in found:
        for version in result.versions:
            timeline.append(
                {
                    "at": version.created_at,
                    "event": f"result.{version.status}",
                    "actor": version.author,
                    "detail": "",
                    "code": tests_by_id[result.test_id],
                    "version": version,
                }
            )
    timeline.sort(key=lambda line: line["at"])
    ordered_codes = {t.test.code for t in order.tests if t.status != TestStatus.CANCELLED}
    return {
        "order": order,
        "patient": patient,
        "specimens": tubes,
        "tube_by_id": tube_by_id,
        "results_by_test": by_test,
        "timeline": timeline,
        "addable": [t for t in catalog.list_tests(session) if t.code not in ordered_codes],
        "open_tests": [t for t in order.tests if t.status in TEST_PENDING],
        "add_error": None,
        "cancel_error": None,
        "cancel_values": {"codes": [], "reason": ""},
    }


@router.get("/orders/{filler_order_number}")
def order_page(
    request: Request, filler_order_number: str, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    order = orders.read(session, filler_order_number, actor=actor)
    context = order_context(session, order, actor)
    context["notice"] = notice_of(request)
    return render(request, "orders/order.html", context)


def _order_with_error(
    request: Request, session: SessionDep, filler: str, actor: Actor, exc: LabError, **extra: Any
) -> Response:
    return show_form_again(
        request,
        session,
        template="orders/order.html",
        read=lambda: order_context(session, orders.read(session, filler, actor=actor), actor),
        status_code=exc.http_status,
        **extra,
    )


@router.post("/orders/{filler_order_number}/tests")
def add_test(
    request: Request,
    filler_order_number: str,
    session: SessionDep,
    actor: PlaceOrdersForm,
    code: Annotated[str, Form()] = "",
) -> Response:
    """An add-on test, on a tube already in the lab when one fits."""
    try:
        if not code.strip():
            raise InvalidInput.field("code", "choose a test to add", code="choose_test")
        orders.add_test(session, actor=actor, filler=filler_order_number, code=code)
    except LabError as exc:
        return _order_with_error(
            request, session, filler_order_number, actor, exc, add_error=error_message(request, exc)
        )
    return redirect_after_post(f"/orders/{filler_order_number}", "test_added")


@router.post("/orders/{filler_order_number}/cancel")
def cancel_tests(
    request: Request,
    filler_order_number: str,
    session: SessionDep,
    actor: CancelOrdersForm,
    form: PostedForm,
) -> Response:
    """Cancel the ticked tests (those without a result), with the reason given."""
    codes = [c for c in form.getlist("codes") if isinstance(c, str) and c.strip()]
    raw_reason = form.get("reason")
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    try:
        if not codes:
            raise InvalidInput.field("codes", "choose the tests to cancel", code="choose_tests")
        orders.cancel_tests(
            session, actor=actor, filler=filler_order_number, codes=codes, reason=reason
        )
    except LabError as exc:
        return _order_with_error(
            request,
            session,
            filler_order_number,
            actor,
            exc,
            cancel_error=error_message(request, exc),
            cancel_values={"codes": codes, "reason": reason},
        )
    return redirect_after_post(f"/orders/{filler_order_number}", "tests_cancelled")


@router.get("/orders/{filler_order_number}/labels.pdf")
def labels_pdf(
    filler_order_number: str, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    """One label per tube of the order, for reprinting at the bench."""
    order = orders.read(session, filler_order_number, actor=actor)
    patient = session.get(Patient, order.patient_id)
    if patient is None:
        raise NotFound(f"order {filler_order_number} has no patient")
    details = patient_details(patient)
    labels = [
        specimen_label(tube, order, details, specimens.tests_of(session, tube))
        for tube in orders.specimens_of(session, order)
        if tube.status not in SPECIMEN_FINISHED
    ]
    if not labels:
        raise NotFound(f"order {filler_order_number} has no tube to label")
    pdf = render_labels(labels, stock=DEFAULT_STOCK)
    return pdf_response(pdf, f"labels-{order.filler_order_number}.pdf")


@router.get("/orders/{filler_order_number}/report.pdf")
def report_pdf(
    request: Request, filler_order_number: str, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    """The patient result report of the order: released results only, the rest as pending."""
    order = orders.read(session, filler_order_number, actor=actor)
    patient = session.get(Patient, order.patient_id)
    if patient is None:
        raise NotFound(f"order {filler_order_number} has no patient")
    results = result_queries.results_of_order(session, order)
    released = [r for r in results if r.verified_at is not None and r.verified_by]
    latest = max(released, key=lambda r: r.verified_at or utcnow(), default=None)
    report = result_report(
        lab=lab_details(request.app.state.settings),
        signer=signer_name(session, latest.verified_by, language_of(request))
        if latest and latest.verified_by
        else None,
        order=order,
        patient=patient,
        specimens=orders.specimens_of(session, order),
        results=results,
        printed_at=utcnow(),
        language=language_of(request),
    )
    return pdf_response(render_result_report(report), f"report-{order.filler_order_number}.pdf")
