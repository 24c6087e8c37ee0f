"""JSON routes for results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog.service import ReferenceRange
from lab.deps import (
    CorrectResults,
    EnterResults,
    ReadPatientData,
    SessionDep,
    VerifyResults,
)
from lab.results import fixes, queries, service
from lab.results.schemas import (
    CancelIn,
    ChooseIn,
    CorrectIn,
    FixIn,
    HoldOut,
    MeasurementOut,
    ReplaceIn,
    ResultIn,
    ResultOut,
    ResultVersionOut,
    SetAsideIn,
    VerifyIn,
)
from lab.tables import LabTest, Result, Specimen
from lab.users import service as users
from lab.users.roles import Permission

router = APIRouter(prefix="/api/v1/results", tags=["results"])


def result_out(session: Session, result: Result, *, with_versions: bool = False) -> ResultOut:
    specimen = session.get(Specimen, result.specimen_id)
    test = session.get(LabTest, result.test_id)
    current = result.versions[-1]
    reference = ReferenceRange(current.reference_low, current.reference_high).text()
    return ResultOut(
        id=result.id,
        accession_number=specimen.accession_number if specimen else "",
        test_code=test.code if test else "",
        loinc=test.loinc if test else None,
        value=queries.value_text(result),
        unit=result.unit,
        flags=list(result.flags),
        reference_range=reference,
        status=result.status,
        version=result.version,
        observed_at=result.observed_at,
        verified_at=result.verified_at,
        verified_by=result.verified_by,
        holds=[
            HoldOut(
                code=hold["code"],
                text=hold["text"],
                key=hold.get("key", ""),
                params=hold.get("params", {}),
            )
            for hold in result.holds
        ],
        ruleset_version=result.ruleset_version,
        versions=[
            ResultVersionOut(
                version=v.version,
                status=v.status,
                value=queries.value_text(v),
                unit=v.unit,
                flags=list(v.flags),
                author=v.author,
                reason=v.reason,
                comment=v.comment,
                instrument=v.instrument,
                instrument_flags=v.instrument_flags,
                critical_notification=v.critical_notification,
                created_at=v.created_at,
            )
            for v in result.versions
        ]
        if with_versions
        else None,
        measurements=[
            MeasurementOut(
                id=m.id,
                number=m.number,
                origin=m.origin,
                reported=m.id == current.measurement_id,
                value=queries.value_text(m),
                unit=m.unit,
                original_value=m.original_value,
                original_unit=m.original_unit,
                dilution=m.dilution,
                preliminary=m.preliminary,
                instrument=m.instrument,
                instrument_flags=m.instrument_flags,
                observed_at=m.observed_at,
                recorded_at=m.recorded_at,
                waiting_for_review=m.after_release and m.reviewed_at is None,
            )
            for m in result.measurements
        ]
        if with_versions
        else None,
    )


@router.get("", response_model=list[ResultOut])
def results_for_specimen(
    session: SessionDep,
    actor: ReadPatientData,
    accession: str = Query(description="Accession number of the specimen"),
) -> list[ResultOut]:
    found = queries.for_specimen(session, accession, actor=actor)
    return [result_out(session, r) for r in found]


@router.get("/review-queue", response_model=list[ResultOut])
def review_queue(
    session: SessionDep, actor: VerifyResults, limit: int = Query(default=100, ge=1, le=1000)
) -> list[ResultOut]:
    """Results awaiting review: stat first, then oldest first. The look is audited: one row per
    result shown, naming its patient (as the review page's reads are)."""
    queue = queries.review_queue(session, limit=limit)
    audit.record_rows(
        session,
        [
            audit.row(
                actor=actor,
                action="read.result.review_queue",
                entity_type="result",
                entity_id=result.id,
                patient_id=result.patient_id,
            )
            for result in queue
        ],
    )
    return [result_out(session, r) for r in queue]


@router.post("", response_model=ResultOut, status_code=201)
def enter_result(data: ResultIn, session: SessionDep, actor: EnterResults) -> ResultOut:
    """Enter a result by hand (for tests not run on an analyser)."""
    outcome = service.record(
        session,
        actor=actor,
        measurement=service.Measurement(
            accession_number=data.accession_number,
            test_code=data.test_code,
            value=data.value,
            unit=data.unit,
            observed_at=data.observed_at,
            comment=data.comment,
            instrument="manual",
        ),
    )
    return result_out(session, queries.stored(session, outcome))


@router.get("/{result_id}", response_model=ResultOut)
def get_result(result_id: int, session: SessionDep, actor: ReadPatientData) -> ResultOut:
    """One result with every version."""
    result = queries.read(session, result_id, actor=actor)
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/verify", response_model=ResultOut)
def verify(
    result_id: int, session: SessionDep, actor: VerifyResults, data: VerifyIn | None = None
) -> ResultOut:
    """Release a result; a critical one needs `critical` (who was told, when, read back)."""
    data = data or VerifyIn()
    critical = (
        service.CriticalNotification(
            notified_person=data.critical.notified_person,
            notified_at=data.critical.notified_at,
            read_back=data.critical.read_back,
        )
        if data.critical
        else None
    )
    result = service.verify(
        session, actor=actor, result_id=result_id, critical=critical, comment=data.comment
    )
    return result_out(session, result)


@router.post("/{result_id}/correct", response_model=ResultOut)
def correct(
    result_id: int, data: CorrectIn, session: SessionDep, actor: CorrectResults
) -> ResultOut:
    result = service.correct(
        session,
        actor=actor,
        result_id=result_id,
        value=data.value,
        reason=data.reason,
        comment=data.comment,
    )
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/choose", response_model=ResultOut)
def choose(result_id: int, data: ChooseIn, session: SessionDep, actor: VerifyResults) -> ResultOut:
    """Report another of the test's measurements (of a released result: a correction, which
    needs the right to correct and a reason)."""
    result = service.choose(
        session,
        actor=actor,
        result_id=result_id,
        measurement_id=data.measurement_id,
        reason=data.reason,
    )
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/set-aside", response_model=ResultOut)
def set_aside(
    result_id: int, data: SetAsideIn, session: SessionDep, actor: VerifyResults
) -> ResultOut:
    """Keep what a released result reports: its further measurements have been looked at."""
    result = service.set_aside(session, actor=actor, result_id=result_id, reason=data.reason)
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/cancel", response_model=ResultOut)
def cancel(result_id: int, data: CancelIn, session: SessionDep, actor: CorrectResults) -> ResultOut:
    result = service.cancel(session, actor=actor, result_id=result_id, reason=data.reason)
    return result_out(session, result)


# --- fixes before release (lab.results.fixes checks the roles: replace and rerun need the
# right to enter results and to read patient data, discard the right to verify) -------------


def _enters_for_patients(actor: EnterResults) -> Actor:
    """A person who enters results and reads the patient's (not an analyser's account)."""
    users.require(actor, Permission.READ_PATIENT_DATA)
    return actor


EntersForPatients = Annotated[Actor, Depends(_enters_for_patients)]


@router.post("/{result_id}/replace", response_model=ResultOut)
def replace(
    result_id: int, data: ReplaceIn, session: SessionDep, actor: EntersForPatients
) -> ResultOut:
    """Report the right value instead of a wrong one not yet verified (the old one is kept)."""
    result = fixes.replace(
        session,
        actor=actor,
        result_id=result_id,
        value=data.value,
        reason=data.reason,
        comment=data.comment,
    )
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/rerun", response_model=ResultOut)
def rerun(result_id: int, data: FixIn, session: SessionDep, actor: EntersForPatients) -> ResultOut:
    """Send the test back to the analyser; the result waits, preliminary, for the new value."""
    result = fixes.rerun(session, actor=actor, result_id=result_id, reason=data.reason)
    return result_out(session, result, with_versions=True)


@router.post("/{result_id}/discard", response_model=ResultOut)
def discard(result_id: int, data: FixIn, session: SessionDep, actor: VerifyResults) -> ResultOut:
    """Withdraw a value not yet verified and cancel the test; the record never gets the value."""
    result = fixes.discard(session, actor=actor, result_id=result_id, reason=data.reason)
    return result_out(session, result, with_versions=True)
