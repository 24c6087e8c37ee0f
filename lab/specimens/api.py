"""JSON routes for specimens."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.deps import HandleSpecimens, ReadPatientData, SessionDep
from lab.results.queries import value_text
from lab.specimens import service
from lab.specimens.schemas import (
    AliquotIn,
    CollectIn,
    RejectIn,
    SpecimenEventOut,
    SpecimenOut,
    SpecimenTestOut,
)
from lab.tables import Order, Result, Specimen

router = APIRouter(prefix="/api/v1/specimens", tags=["specimens"])


def specimen_out(session: Session, specimen: Specimen) -> SpecimenOut:
    tests = service.tests_of(session, specimen)
    results = {
        r.ordered_test_id: r
        for r in session.scalars(
            select(Result).where(Result.ordered_test_id.in_([t.id for t in tests]))
        )
    }
    order = session.get(Order, specimen.order_id)
    parent = session.get(Specimen, specimen.parent_id) if specimen.parent_id else None
    return SpecimenOut(
        accession_number=specimen.accession_number,
        status=specimen.status,
        specimen_type=specimen.specimen_type,
        container=specimen.container,
        order=order.filler_order_number if order else "",
        patient_id=specimen.patient_id,
        parent=parent.accession_number if parent else None,
        collected_at=specimen.collected_at,
        received_at=specimen.received_at,
        rejection_reason=specimen.rejection_reason,
        tests=[
            SpecimenTestOut(
                code=t.test.code,
                name=t.test.name_nb,
                status=t.status,
                result_id=results[t.id].id if t.id in results else None,
                value=value_text(results[t.id]) if t.id in results else None,
                unit=results[t.id].unit if t.id in results else None,
                flags=list(results[t.id].flags) if t.id in results else [],
                result_status=results[t.id].status if t.id in results else None,
            )
            for t in tests
        ],
        timeline=[SpecimenEventOut.model_validate(e) for e in specimen.events],
    )


@router.get("/{accession_number}", response_model=SpecimenOut)
def get_specimen(accession_number: str, session: SessionDep, actor: ReadPatientData) -> SpecimenOut:
    """The specimen with its status, tests, current results and timeline."""
    specimen = service.read(session, accession_number, actor=actor)
    return specimen_out(session, specimen)


@router.post("/{accession_number}/collect", response_model=SpecimenOut)
def collect(
    accession_number: str, data: CollectIn, session: SessionDep, actor: HandleSpecimens
) -> SpecimenOut:
    specimen = service.collect(session, actor=actor, number=accession_number, at=data.collected_at)
    return specimen_out(session, specimen)


@router.post("/{accession_number}/receive", response_model=SpecimenOut)
def receive(accession_number: str, session: SessionDep, actor: HandleSpecimens) -> SpecimenOut:
    """Mark the specimen received in the lab."""
    specimen = service.receive(session, actor=actor, number=accession_number)
    return specimen_out(session, specimen)


@router.post("/{accession_number}/reject", response_model=SpecimenOut)
def reject(
    accession_number: str, data: RejectIn, session: SessionDep, actor: HandleSpecimens
) -> SpecimenOut:
    """Reject with one of the lab's reason codes; the record is told at once, with the reason as
    its HL7 table 0490 code (SPM-21) where one applies, and the tube's waiting tests stay on the
    overdue list until a new specimen comes."""
    specimen = service.reject(
        session, actor=actor, number=accession_number, reason=data.reason, comment=data.comment
    )
    return specimen_out(session, specimen)


@router.post("/{accession_number}/dispose", response_model=SpecimenOut)
def dispose(accession_number: str, session: SessionDep, actor: HandleSpecimens) -> SpecimenOut:
    specimen = service.dispose(session, actor=actor, number=accession_number)
    return specimen_out(session, specimen)


@router.post("/{accession_number}/aliquots", response_model=SpecimenOut, status_code=201)
def make_aliquot(
    accession_number: str, data: AliquotIn, session: SessionDep, actor: HandleSpecimens
) -> SpecimenOut:
    child = service.make_aliquot(
        session, actor=actor, number=accession_number, container=data.container
    )
    return specimen_out(session, child)
