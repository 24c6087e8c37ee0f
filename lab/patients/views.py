"""Who has seen this patient's data: the answer a lab owes a patient who asks (the Norwegian
Patient Records Act, pasientjournalloven, gives the patient the right to know who has had access
to their health information).

For the roles that may read the audit trail. The patient's name is shown only to a role that
may read patient data, and that look is audited like any other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from lab import audit
from lab.audit import Actor
from lab.audit_queries import AuditFilter, find_events, readers_of_patient
from lab.deps import SessionDep
from lab.patients import service as patients
from lab.users.roles import Permission, permissions_of
from lab.web.auth import page_requires
from lab.web.pages import page_router
from lab.web.templating import render

router = page_router()

ReadAuditPage = Annotated[Actor, Depends(page_requires(Permission.READ_AUDIT))]


@router.get("/patients/{patient_id}/access")
def access_log(
    request: Request, patient_id: int, session: SessionDep, actor: ReadAuditPage
) -> Response:
    patient = None
    if Permission.READ_PATIENT_DATA in permissions_of(list(actor.roles)):
        patient = patients.get(session, patient_id, actor=actor)  # audited
    readers = readers_of_patient(session, patient_id)
    events = find_events(session, AuditFilter(patient_id=patient_id), limit=200)
    audit.record_read(
        session, actor=actor, patient_id=patient_id, what="access_log", entity_id=patient_id
    )
    return render(
        request,
        "users/access.html",
        {"patient_id": patient_id, "patient": patient, "readers": readers, "events": events},
    )
