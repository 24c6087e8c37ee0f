"""JSON routes for patients (thin: parse, call the service, return a schema)."""

from __future__ import annotations

from fastapi import APIRouter

from lab import audit
from lab.deps import ManagePatients, MergePatients, ReadAudit, ReadPatientData, SessionDep
from lab.patients import service
from lab.patients.schemas import AuditEventOut, MergeIn, MergeOut, PatientIn, PatientOut

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


def demographics(data: PatientIn) -> service.Demographics:
    return service.Demographics(
        identifiers=[
            service.IdentifierInput(value=i.value, authority=i.authority) for i in data.identifiers
        ],
        family_name=data.family_name,
        given_name=data.given_name,
        birth_date=data.birth_date,
        sex=data.sex,
    )


@router.post("", response_model=PatientOut, status_code=200)
def register_patient(data: PatientIn, session: SessionDep, actor: ManagePatients) -> PatientOut:
    """Register a patient, or update the one that has any of these identifiers."""
    patient = service.upsert(session, actor=actor, data=demographics(data))
    return PatientOut.model_validate(patient)


@router.get("", response_model=list[PatientOut])
def search_patients(q: str, session: SessionDep, actor: ReadPatientData) -> list[PatientOut]:
    """By identifier or the start of a name."""
    found = service.search(session, actor=actor, text=q)
    return [PatientOut.model_validate(p) for p in found]


@router.get("/{patient_id}", response_model=PatientOut)
def get_patient(patient_id: int, session: SessionDep, actor: ReadPatientData) -> PatientOut:
    patient = service.get(session, patient_id, actor=actor)
    return PatientOut.model_validate(patient)


@router.post("/merge", response_model=MergeOut)
def merge_patients(data: MergeIn, session: SessionDep, actor: MergePatients) -> MergeOut:
    """Move everything of `merged_patient_id` to `surviving_patient_id` (like HL7 ADT^A40)."""
    merged = service.merge(
        session,
        actor=actor,
        surviving_patient_id=data.surviving_patient_id,
        merged_patient_id=data.merged_patient_id,
        reason=data.reason,
    )
    return MergeOut(
        surviving_patient_id=merged.surviving_patient_id,
        merged_patient_id=merged.merged_patient_id,
        moved_orders=merged.moved_orders,
    )


@router.get("/{patient_id}/audit", response_model=list[AuditEventOut])
def patient_audit(patient_id: int, session: SessionDep, actor: ReadAudit) -> list[AuditEventOut]:
    """Who has seen or changed this patient's data ("who has seen my results")."""
    events = audit.events_for_patient(session, patient_id)
    return [AuditEventOut.model_validate(e) for e in events]
