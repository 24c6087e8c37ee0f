"""The receipt bench: one scan, one clear answer; the specimen page; rejection; labels."""

from __future__ import annotations

import io
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.specimens import accession
from lab.tables import AuditEvent
from tests.web.support import accession_for, order, sign_in

PARTIAL = {"X-Lab-Partial": "receipt"}


def scan(client: TestClient, token: str, number: str, **kwargs: Any) -> httpx.Response:
    response: httpx.Response = client.post(
        "/specimens/receive", data={"csrf_token": token, "accession_number": number}, **kwargs
    )
    return response


def test_a_good_scan_shows_patient_container_and_tests(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R1", ["NA", "K", "HB"], priority="stat")
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client)
    response = scan(client, token, number + "\n", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/specimens/receive?done=received&scanned={number}"
    page = client.get(response.headers["location"])
    assert 'data-outcome="received"' in page.text
    assert "Østbø, Kari Åse" in page.text and "SERUM" in page.text
    assert "<strong>NA</strong>" in page.text and "<strong>K</strong>" in page.text
    assert "<strong>HB</strong>" not in page.text  # HB is in the EDTA tube
    assert "autofocus" in page.text
    # The scan list of this session names it.
    assert f'<a href="/specimens/{number}">{number}</a></td><td>Mottatt' in page.text


def test_the_page_script_gets_only_the_panel(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R2", ["HB"])
    number = accession_for(db, placed, "EDTA")
    token = sign_in(client)
    response = scan(client, token, number, headers=PARTIAL)
    assert response.status_code == 200
    assert "<html" not in response.text and 'data-outcome="received"' in response.text
    again = scan(client, token, number, headers=PARTIAL)
    assert again.status_code == 409
    assert 'data-outcome="already"' in again.text and "Allerede mottatt" in again.text
    # Both scans are listed, newest first.
    rows = again.text.split('<section class="scans">')[1]
    assert rows.index("Allerede mottatt") < rows.index("Mottatt</td>")


def test_unknown_number_is_a_clear_error(client: TestClient) -> None:
    token = sign_in(client)
    unknown = accession.make(2026, 9_999_999)  # valid check digit, no such specimen
    response = scan(client, token, unknown)
    assert response.status_code == 404
    assert 'data-outcome="unknown"' in response.text and "Ukjent prøvenummer" in response.text
    assert unknown in response.text
    assert "autofocus" in response.text


def test_mistyped_check_digit_is_told_apart_from_unknown(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R3", ["HB"])
    number = accession_for(db, placed, "EDTA")
    # Damm's check digit catches every single wrong digit (lab/specimens/accession.py).
    mistyped = number[:-1] + str((int(number[-1]) + 1) % 10)
    token = sign_in(client)
    response = scan(client, token, mistyped)
    assert response.status_code == 422
    assert 'data-outcome="check_digit"' in response.text and "Feil kontrollsiffer" in response.text


def test_rejected_specimen_cannot_be_received(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R4", ["HB"])
    number = accession_for(db, placed, "EDTA")
    token = sign_in(client)
    rejected = client.post(
        f"/specimens/{number}/reject",
        data={"csrf_token": token, "reason": "RC", "comment": "levret"},
        follow_redirects=False,
    )
    assert rejected.status_code == 303
    assert rejected.headers["location"] == f"/specimens/{number}?done=rejected"
    page = client.get(rejected.headers["location"])
    assert "Prøven er avvist." in page.text and "RC – Koagulert: levret" in page.text
    response = scan(client, token, number)
    assert response.status_code == 409
    assert 'data-outcome="rejected"' in response.text and "Årsak: Koagulert" in response.text


def test_reject_needs_a_known_reason_and_keeps_the_comment(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R5", ["HB"])
    number = accession_for(db, placed, "EDTA")
    token = sign_in(client)
    response = client.post(
        f"/specimens/{number}/reject",
        data={"csrf_token": token, "reason": "XX", "comment": "min kommentar"},
    )
    assert response.status_code == 422
    assert "Velg en årsak fra listen." in response.text and 'value="min kommentar"' in response.text


def test_specimen_page_shows_tests_results_and_timeline_and_is_audited(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-R6", ["NA", "K"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client)
    scan(client, token, number)
    client.post(f"/specimens/{number}/results", data={"csrf_token": token, "value_NA": "128"})
    page = client.get(f"/specimens/{number}")
    assert page.status_code == 200
    assert "Østbø, Kari Åse" in page.text
    assert "<strong>NA</strong>" in page.text and "flag-L" in page.text
    timeline = page.text.split('class="timeline"')[1]
    assert timeline.index("Registrert") < timeline.index("Mottatt")
    assert timeline.index("Mottatt") < timeline.index("Resultat registrert")
    reads = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "read.specimen", AuditEvent.entity_id == number
        )
    ).all()
    assert reads and reads[-1].actor_name == "t-technician" and reads[-1].channel == "ui"
    assert reads[-1].patient_id == placed.patient_id


def test_label_pdf_carries_the_accession_number(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-R7", ["HB", "NA"])
    number = accession_for(db, placed, "EDTA")
    sign_in(client)
    response = client.get(f"/specimens/{number}/label.pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert number in text
    both = client.get(f"/orders/{placed.filler_order_number}/labels.pdf")
    assert len(PdfReader(io.BytesIO(both.content)).pages) == 2


def test_unknown_specimen_page_is_a_404_page(client: TestClient) -> None:
    sign_in(client)
    response = client.get(f"/specimens/{accession.make(2026, 9_999_998)}")
    assert response.status_code == 404
    assert "Finnes ikke" in response.text and "<html" in response.text
