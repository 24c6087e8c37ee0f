"""Four eyes and audited reads (issue 14): a value typed in by hand is released by someone other
than the person who typed it (API and page refuse with the reason), and the review-queue API
and reads of HL7 message content are audited."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import INBOUND, AuditEvent, Hl7Message
from tests.web.support import accession_for, order, sign_in


def _typed_by_reviewer(
    client: TestClient, db: Session, as_role: dict[str, dict[str, str]], placer: str
) -> tuple[int, str]:
    placed = order(db, placer, ["NA"])
    accession = accession_for(db, placed, "SERUM")
    client.post(f"/api/v1/specimens/{accession}/receive", headers=as_role["technician"])
    typed = client.post(
        "/api/v1/results",
        json={"accession_number": accession, "test_code": "NA", "value": "128"},
        headers=as_role["reviewer"],
    )
    assert typed.status_code == 201, typed.text
    return int(typed.json()["id"]), accession


def test_the_one_who_typed_a_value_does_not_release_it(
    client: TestClient, db: Session, as_role: dict[str, dict[str, str]]
) -> None:
    result_id, _ = _typed_by_reviewer(client, db, as_role, "HP-4EYES-1")
    refused = client.post(f"/api/v1/results/{result_id}/verify", headers=as_role["reviewer"])
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "verify_own_result"
    assert "another reviewer must verify it" in refused.json()["message"]
    released = client.post(f"/api/v1/results/{result_id}/verify", headers=as_role["physician"])
    assert released.status_code == 200 and released.json()["verified_by"] == "t-physician"


def test_the_review_page_says_why(
    client: TestClient, db: Session, as_role: dict[str, dict[str, str]]
) -> None:
    result_id, _ = _typed_by_reviewer(client, db, as_role, "HP-4EYES-2")
    csrf = sign_in(client, "t-reviewer")
    page = client.post(f"/results/{result_id}/verify", data={"csrf_token": csrf})
    assert page.status_code == 403
    assert "Du skrev inn dette resultatet selv; en annen kontrollør må godkjenne det." in page.text
    again = client.get(f"/api/v1/results/{result_id}", headers=as_role["physician"])
    assert again.json()["status"] == "awaiting_review"


def test_the_review_queue_api_is_an_audited_read(
    client: TestClient, db: Session, as_role: dict[str, dict[str, str]]
) -> None:
    result_id, _ = _typed_by_reviewer(client, db, as_role, "HP-4EYES-3")
    queue = client.get("/api/v1/results/review-queue", headers=as_role["physician"])
    assert queue.status_code == 200 and result_id in [r["id"] for r in queue.json()]
    rows = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "read.result.review_queue",
            AuditEvent.actor_name == "t-physician",
            AuditEvent.entity_id == str(result_id),
        )
    ).all()
    assert len(rows) == 1 and rows[0].patient_id is not None
    assert rows[0].via.startswith("token:")


def test_reading_hl7_content_is_audited_even_without_a_patient(
    client: TestClient, db: Session, as_role: dict[str, dict[str, str]]
) -> None:
    message = Hl7Message(
        direction=INBOUND,
        status="rejected",
        partner="127.0.0.1:40000",
        control_id="ADT-NOPATIENT-1",
        message_type="ADT^A08",
        raw=b"MSH|^~\\&|EPIC|HOSP|LAB|HOSP|20261127081500||ADT^A08|X|P|2.5.1\rPID|1||12345",
        error="",
        attempts=0,
        next_attempt_at=datetime.now(UTC),
    )
    db.add(message)
    db.commit()

    def looks(actor: str) -> int:
        return len(
            db.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "read.hl7_message",
                    AuditEvent.entity_id == str(message.id),
                    AuditEvent.actor_name == actor,
                )
            ).all()
        )

    shown = client.get(f"/api/v1/messages/{message.id}", headers=as_role["physician"])
    assert shown.status_code == 200 and "PID|1||12345" in (shown.json()["content"] or "")
    assert looks("t-physician") == 1
    # An administrator sees the metadata only: nothing read, nothing audited as a read.
    meta = client.get(f"/api/v1/messages/{message.id}", headers=as_role["admin"])
    assert meta.status_code == 200 and meta.json()["content"] is None
    assert looks("t-admin") == 0
