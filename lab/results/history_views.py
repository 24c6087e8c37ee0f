"""A patient's history of a test: the cumulative view (a page, newest first, a page at a time)
and the cumulative report (PDF, one or more tests side by side).

The page reads one window of the history per request along `ix_result_patient_history`
(keyset paging: `before` is the last shown result's measured time and id), so a patient with
ten thousand results of a test costs it the same as a patient with a hundred.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import lazyload

from lab.catalog import service as catalog
from lab.deps import SessionDep
from lab.errors import InvalidInput, NotFound
from lab.reports import render_cumulative_report
from lab.results import queries as result_queries
from lab.tables import LabTest, Patient
from lab.timeutil import utcnow
from lab.web.auth import ReadPatientDataPage
from lab.web.pages import page_router
from lab.web.printouts import cumulative_report, lab_details, pdf_response
from lab.web.templating import language_of, render

router = page_router()

# The cumulative page shows this many results of the test, newest first; older ones a page on.
HISTORY_PAGE = 100


def _patient(session: SessionDep, patient_id: int) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound(
            f"no patient {patient_id}", code="patient_unknown", params={"id": patient_id}
        )
    return patient


@router.get("/patients/{patient_id}/cumulative")
def cumulative_page(
    request: Request,
    patient_id: int,
    session: SessionDep,
    actor: ReadPatientDataPage,
    test: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    """The patient's released results of one test, newest measured first, a page at a time."""
    patient = _patient(session, patient_id)
    code = test.strip().upper()
    if not code:
        raise InvalidInput.field("test", "name a test", code="choose_test")
    cursor = result_queries.HistoryCursor.parse(before) if before else None
    points = result_queries.cumulative(
        session,
        actor=actor,
        patient_id=patient.id,
        test_code=code,
        limit=HISTORY_PAGE + 1,
        before=cursor,
    )
    shown = points[:HISTORY_PAGE]
    lab_test = session.scalar(
        select(LabTest).where(LabTest.code == code).options(lazyload(LabTest.reference_intervals))
    )
    return render(
        request,
        "results/cumulative.html",
        {
            "patient": patient,
            "test": lab_test,
            "points": shown,
            "next_cursor": shown[-1].cursor.text() if len(points) > HISTORY_PAGE else None,
            "first_page": cursor is None,
            "page_size": HISTORY_PAGE,
        },
    )


@router.get("/patients/{patient_id}/cumulative.pdf")
def cumulative_pdf(
    request: Request,
    patient_id: int,
    session: SessionDep,
    actor: ReadPatientDataPage,
    test: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The patient's released results of one or more tests over time (newest sample first):
    `?test=NA&test=K&test=KREA`, or `?test=NA,K,KREA`."""
    patient = _patient(session, patient_id)
    codes = [c.strip().upper() for value in test or [] for c in value.split(",") if c.strip()]
    if not codes:
        raise InvalidInput.field("test", "name at least one test", code="choose_test")
    chosen = []
    for code in dict.fromkeys(codes):
        lab_test = catalog.get_by_code(session, code)
        found = result_queries.cumulative(
            session, actor=actor, patient_id=patient.id, test_code=code
        )
        chosen.append((lab_test, found))
    report = cumulative_report(
        lab=lab_details(request.app.state.settings),
        patient=patient,
        tests=chosen,
        printed_at=utcnow(),
        language=language_of(request),
    )
    name = "-".join(t.code for t, _ in chosen)
    return pdf_response(render_cumulative_report(report), f"cumulative-{name}.pdf")
