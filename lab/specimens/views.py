"""Specimen pages: receipt at the reception bench (scanner friendly), the specimen, its label.

The receipt page is built for a barcode scanner, which is a keyboard that types the accession
number and Enter: one input with autofocus, an answer at once, and the input ready for the
next tube. The page's script posts the scan and swaps in the `receipt_panel` block; without
the script the form posts and redirects as any other form.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Form, Request, Response
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.deps import SESSION_COOKIE, SessionDep
from lab.errors import Conflict, InvalidInput, LabError, NotFound
from lab.patients import service as patients
from lab.reports import DEFAULT_STOCK, render_labels
from lab.results import queries as result_queries
from lab.specimens import accession
from lab.specimens import queries as work_lists
from lab.specimens import service as specimens
from lab.tables import SPECIMEN_FINISHED, Order, Patient, Specimen
from lab.web.auth import HandleSpecimensForm, HandleSpecimensPage, ReadPatientDataPage
from lab.web.pages import (
    error_message,
    notice_of,
    page_router,
    redirect_after_post,
    show_form_again,
)
from lab.web.printouts import patient_details, pdf_response, specimen_label
from lab.web.templating import render, render_block

router = page_router()

SCANS_COOKIE = "lab_scans"
# The scans of this sign-in the list shows (newest first); the count covers every scan.
MAX_SCANS = 40
PARTIAL_HEADER = "x-lab-partial"
# What a scan can come to; each has a text in lab/web/i18n.py ("scan.<outcome>").
OUTCOMES = ("received", "unknown", "check_digit", "empty", "already", "rejected", "refused")
_SAFE_SCAN = re.compile(r"[^0-9A-Za-z-]")


@dataclass(frozen=True, slots=True)
class Scan:
    """One line of the scan list. Only the number and outcome: no patient data in a cookie."""

    number: str
    outcome: str
    at: float


def _session_tag(request: Request) -> str:
    """Ties the scan list to this sign-in, so the next person on the PC starts with none."""
    key = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def scan_count_of(request: Request) -> int:
    """How many scans this sign-in has made (the list keeps only the latest)."""
    raw = request.cookies.get(SCANS_COOKIE, "")
    tag, _, body = raw.partition("~")
    count, _, _ = body.partition("#")
    if tag != _session_tag(request) or not count.isdigit():
        return len(scans_of(request))
    return int(count)


def scans_of(request: Request) -> list[Scan]:
    raw = request.cookies.get(SCANS_COOKIE, "")
    tag, _, body = raw.partition("~")
    if tag != _session_tag(request):
        return []
    if "#" in body:
        body = body.partition("#")[2]
    scans: list[Scan] = []
    for item in body.split("|"):
        number, outcome, at = [*item.split(":"), "", "", ""][:3]
        if outcome in OUTCOMES and at.isdigit():
            scans.append(Scan(number=_SAFE_SCAN.sub("", number)[:20], outcome=outcome, at=int(at)))
    return scans[:MAX_SCANS]


def _remember(request: Request, response: Response, scans: list[Scan], scan: Scan) -> None:
    kept = [scan, *scans][:MAX_SCANS]
    body = "|".join(f"{s.number}:{s.outcome}:{int(s.at)}" for s in kept)
    count = scan_count_of(request) + 1
    response.set_cookie(
        SCANS_COOKIE,
        f"{_session_tag(request)}~{count}#{body}",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/specimens",
    )


def _received_view(session: Session, specimen: Specimen, actor: Actor) -> dict[str, Any]:
    """What the bench sees after a good scan: the patient, the tube and its tests."""
    patient = patients.get(session, specimen.patient_id, actor=actor)  # an audited read
    order = session.get(Order, specimen.order_id)
    return {
        "specimen": specimen,
        "patient": patient,
        "order": order,
        "tests": specimens.tests_of(session, specimen),
    }


def _failed_scan(session: Session, number: str, exc: LabError) -> tuple[str, Specimen | None]:
    """Which of the known refusals this is, for a message the bench can act on."""
    if isinstance(exc, InvalidInput):
        return ("empty" if not accession.normalise(number) else "check_digit"), None
    if isinstance(exc, NotFound):
        return "unknown", None
    if isinstance(exc, Conflict):
        try:
            specimen = specimens.get_by_accession(session, number)
        except LabError:
            return "refused", None
        if specimen.status in SPECIMEN_FINISHED:
            return "rejected", specimen
        if specimen.received_at is not None:
            return "already", specimen
    return "refused", None


def scan_lines(session: Session, scans: list[Scan], *, actor: Actor) -> list[dict[str, Any]]:
    """The scan list with each tube's priority and patient, read in two queries; the patients
    shown are audited as read (the cookie itself holds only numbers and outcomes)."""
    numbers = [s.number for s in scans if s.outcome in ("received", "already", "rejected")]
    found = work_lists.tubes_with_orders(session, numbers)
    shown = {specimen.patient_id for specimen, _ in found.values()}
    people = {p.id: p for p in patients.several(session, shown, actor=actor)}
    lines = []
    for scan in scans:
        tube = found.get(scan.number)
        lines.append(
            {
                "scan": scan,
                "specimen": tube[0] if tube else None,
                "order": tube[1] if tube else None,
                "patient": people.get(tube[0].patient_id) if tube else None,
            }
        )
    return lines


def _receipt_context(request: Request) -> dict[str, Any]:
    return {
        "scans": scans_of(request),
        "scan_count": scan_count_of(request),
        "reject_reasons": list(specimens.REJECT_REASONS),
        "outcome": None,
        "scanned": "",
        "message": "",
        "received": None,
        "refused_specimen": None,
        "notice": notice_of(request),
        "reject_error": None,
        "reject_values": {"reason": "", "comment": ""},
    }


@router.get("/specimens/receive")
def receipt_page(
    request: Request, session: SessionDep, actor: HandleSpecimensPage, scanned: str = ""
) -> Response:
    context = _receipt_context(request)
    if scanned:
        specimen = specimens.get_by_accession(session, scanned)
        context.update(outcome="received", received=_received_view(session, specimen, actor))
    context["scan_lines"] = scan_lines(session, context["scans"], actor=actor)
    return render(request, "specimens/receive.html", context)


@router.post("/specimens/receive")
def receive(
    request: Request,
    session: SessionDep,
    actor: HandleSpecimensForm,
    accession_number: Annotated[str, Form()] = "",
) -> Response:
    partial = request.headers.get(PARTIAL_HEADER) == "receipt"
    number = accession.normalise(accession_number)
    scans = scans_of(request)
    context = _receipt_context(request)
    try:
        specimen = specimens.receive(session, actor=actor, number=accession_number)
    except LabError as exc:
        error, refused = exc, list[Scan]()

        def read_refusal() -> dict[str, Any]:
            outcome, known = _failed_scan(session, accession_number, error)
            scan = Scan(number=_SAFE_SCAN.sub("", number)[:20], outcome=outcome, at=time.time())
            refused.append(scan)
            context.update(
                outcome=outcome,
                scanned=number,
                message=error_message(request, error),
                refused_specimen=known,
                scans=[scan, *scans][:MAX_SCANS],
                scan_count=context["scan_count"] + 1,
            )
            context["scan_lines"] = scan_lines(session, context["scans"], actor=actor)
            return context

        response = show_form_again(
            request,
            session,
            template="specimens/receive.html",
            read=read_refusal,
            status_code=exc.http_status,
            block="receipt_panel" if partial else None,
        )
        _remember(request, response, scans, refused[0])
        return response
    scan = Scan(number=specimen.accession_number, outcome="received", at=time.time())
    if not partial:
        redirect = redirect_after_post(
            "/specimens/receive", "received", scanned=specimen.accession_number
        )
        _remember(request, redirect, scans, scan)
        return redirect
    # The page's script asked for the panel only: no navigation, so nothing to redirect.
    context.update(
        outcome="received",
        scanned=specimen.accession_number,
        received=_received_view(session, specimen, actor),
        scans=[scan, *scans][:MAX_SCANS],
        scan_count=context["scan_count"] + 1,
    )
    context["scan_lines"] = scan_lines(session, context["scans"], actor=actor)
    response = render_block(request, "specimens/receive.html", "receipt_panel", context)
    _remember(request, response, scans, scan)
    return response


def specimen_context(session: Session, specimen: Specimen, actor: Actor) -> dict[str, Any]:
    """The specimen page: tests with results and one timeline of the tube and its results."""
    found = result_queries.for_specimen(session, specimen.accession_number, actor=actor)
    by_test = {r.ordered_test_id: r for r in found}
    patient = session.get(Patient, specimen.patient_id)
    order = session.get(Order, specimen.order_id)
    timeline: list[dict[str, Any]] = [
        {"at": e.at, "event": e.event, "actor": e.actor, "detail": e.detail}
        for e in specimen.events
    ]
    codes = {t.test_id: t.test.code for t in specimens.tests_of(session, specimen)}
    for result in found:
        for version in result.versions:
            timeline.append(
                {
                    "at": version.created_at,
                    "event": f"result.{version.status}",
                    "actor": version.author,
                    "detail": "",
                    "code": codes[result.test_id],
                    "version": version,
                }
            )
    timeline.sort(key=lambda line: line["at"])
    parent = session.get(Specimen, specimen.parent_id) if specimen.parent_id else None
    return {
        "specimen": specimen,
        "parent": parent,
        "patient": patient,
        "order": order,
        "tests": specimens.tests_of(session, specimen),
        "results_by_test": by_test,
        "timeline": timeline,
        "reject_reasons": list(specimens.REJECT_REASONS),
        "reject_error": None,
        "reject_values": {"reason": "", "comment": ""},
    }


@router.get("/specimens/{accession_number}")
def specimen_page(
    request: Request, accession_number: str, session: SessionDep, actor: ReadPatientDataPage
) -> Response:
    specimen = specimens.read(session, accession_number, actor=actor)
    context = specimen_context(session, specimen, actor)
    context["notice"] = notice_of(request)
    return render(request, "specimens/specimen.html", context)


@router.post("/specimens/{accession_number}/reject")
def reject(
    request: Request,
    accession_number: str,
    session: SessionDep,
    actor: HandleSpecimensForm,
    reason: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Reject the tube; from the scan page the bench stays on the scan page."""
    at_receipt = back == "receive"
    try:
        specimen = specimens.reject(
            session, actor=actor, number=accession_number, reason=reason, comment=comment.strip()
        )
    except (InvalidInput, Conflict) as exc:
        kept = {"reason": reason, "comment": comment}
        if at_receipt:

            def read_receipt() -> dict[str, Any]:
                tube = specimens.get_by_accession(session, accession_number)
                context = _receipt_context(request)
                context.update(
                    outcome="received",
                    scanned=tube.accession_number,
                    received=_received_view(session, tube, actor),
                )
                context["scan_lines"] = scan_lines(session, context["scans"], actor=actor)
                return context

            return show_form_again(
                request,
                session,
                template="specimens/receive.html",
                read=read_receipt,
                status_code=exc.http_status,
                reject_error=error_message(request, exc),
                reject_values=kept,
            )
        return show_form_again(
            request,
            session,
            template="specimens/specimen.html",
            read=lambda: specimen_context(
                session, specimens.read(session, accession_number, actor=actor), actor
            ),
            status_code=exc.http_status,
            reject_error=error_message(request, exc),
            reject_values=kept,
        )
    if at_receipt:
        scan = Scan(number=specimen.accession_number, outcome="rejected", at=time.time())
        scans = [s for s in scans_of(request) if s.number != specimen.accession_number]
        redirect = redirect_after_post("/specimens/receive", "rejected")
        _remember(request, redirect, scans, scan)
        return redirect
    return redirect_after_post(f"/specimens/{specimen.accession_number}", "rejected")


@router.get("/specimens/{accession_number}/label.pdf")
def label_pdf(accession_number: str, session: SessionDep, actor: ReadPatientDataPage) -> Response:
    """The specimen's label, one page the size of the label stock."""
    specimen = specimens.read(session, accession_number, actor=actor)
    order = session.get(Order, specimen.order_id)
    patient = session.get(Patient, specimen.patient_id)
    if order is None or patient is None:
        raise NotFound(f"{specimen.accession_number} has no order or patient")
    label = specimen_label(
        specimen, order, patient_details(patient), specimens.tests_of(session, specimen)
    )
    pdf = render_labels([label], stock=DEFAULT_STOCK)
    return pdf_response(pdf, f"label-{specimen.accession_number}.pdf")
