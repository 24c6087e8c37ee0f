"""The audit trail page and "who has seen my data"."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import AuditEvent
from tests.web.support import accession_for, order, sign_in


def test_who_has_seen_the_patients_data(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-AUD1", ["NA"])
    tube = accession_for(db, placed, "SERUM")
    sign_in(client, "t-technician")
    assert client.get(f"/specimens/{tube}").status_code == 200  # an audited read
    assert client.get(f"/patients/{placed.patient_id}/access").status_code == 403

    physician = TestClient(client.app)
    sign_in(physician, "t-physician")
    page = physician.get(f"/patients/{placed.patient_id}/access")
    assert page.status_code == 200
    readers = page.text.split('class="readers"')[1].split("</table>")[0]
    assert "t-technician" in readers
    # Looking at the access log is itself written down.
    assert db.scalar(
        select(AuditEvent.id).where(
            AuditEvent.action == "read.access_log", AuditEvent.actor_name == "t-physician"
        )
    )

    admin = TestClient(client.app)
    sign_in(admin, "t-admin")
    trail = admin.get(f"/audit?patient={placed.patient_id}&action=read.")
    assert trail.status_code == 200 and "t-technician" in trail.text
    assert "read.specimen" in trail.text
    everything = admin.get("/audit?user=t-technician")
    assert everything.status_code == 200 and "user.sign_in" in everything.text
    nothing = admin.get("/audit?user=nobody-at-all")
    assert (
        '<span class="count-badge">0</span>' in nothing.text and "Ingen hendelser." in nothing.text
    )
