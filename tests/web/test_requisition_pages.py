"""Manual requisition: patient and order typed in from paper, checked like an HL7 order."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import Order, Patient
from testkit.patients import KARI_FNR
from tests.web.support import sign_in


def _error(html: str, field: str) -> str:
    marker = f'id="error-{field}"'
    assert marker in html, f"no error next to {field}"
    return html.split(marker)[1].split("</span>")[0]


def test_every_problem_is_shown_next_to_its_field(client: TestClient) -> None:
    csrf = sign_in(client, "t-technician")
    assert client.get("/requisitions/new").status_code == 200
    wrong_digit = KARI_FNR[:-1] + str((int(KARI_FNR[-1]) + 1) % 10)
    refused = client.post(
        "/requisitions/new",
        data={
            "csrf_token": csrf,
            "national_id": wrong_digit,
            "family_name": "",
            "given_name": "Kari",
            "placer_order_number": "",
            "priority": "routine",
            "clinician_hpr": "91A",
        },
    )
    assert refused.status_code == 422
    page = refused.text
    assert "Kontrollsifrene i FNR stemmer ikke." in _error(page, "national_id")
    assert "Etternavnet mangler." in _error(page, "family_name")
    assert "Rekvirentens rekvisisjonsnummer mangler." in _error(page, "placer_order_number")
    assert "Rekvisisjonen ber ikke om noen analyser." in _error(page, "tests")
    assert "HPR-nummeret har bare sifre." in _error(page, "clinician_hpr")
    assert f'value="{wrong_digit}"' in page and 'value="Kari"' in page  # input kept


def test_a_paper_requisition_registers_patient_order_and_tubes(
    client: TestClient, db: Session
) -> None:
    csrf = sign_in(client, "t-technician")
    placed = client.post(
        "/requisitions/new",
        data={
            "csrf_token": csrf,
            "national_id": KARI_FNR,
            "family_name": "Østbø",
            "given_name": "Kari Åse",
            "placer_order_number": "PAPIR-4711",
            "priority": "stat",
            "clinician_name": "Lise Lien",
            "clinician_hpr": "9144889",
            "location": "Legevakten",
            "tests": ["NA", "K", "HB"],
        },
        follow_redirects=False,
    )
    assert placed.status_code == 303, placed.text
    order_page = client.get(placed.headers["location"])
    assert "Rekvisisjonen er registrert" in order_page.text
    assert "Lise Lien (HPR 9144889)" in order_page.text
    order = db.scalar(select(Order).where(Order.placer_order_number == "PAPIR-4711"))
    assert order is not None and order.priority == "stat" and order.source == "manual"
    patient = db.get(Patient, order.patient_id)
    assert patient is not None and str(patient.birth_date) == "1984-03-15" and patient.sex == "F"
    again = client.post(
        "/requisitions/new",
        data={
            "csrf_token": csrf,
            "national_id": KARI_FNR,
            "family_name": "Østbø",
            "placer_order_number": "PAPIR-4711",
            "priority": "routine",
            "tests": ["NA"],
        },
    )
    assert again.status_code == 409
    assert "finnes allerede" in _error(again.text, "placer_order_number")


def test_only_roles_that_place_orders(client: TestClient) -> None:
    csrf = sign_in(client, "t-reviewer")
    assert client.get("/requisitions/new").status_code == 403
    posted = client.post("/requisitions/new", data={"csrf_token": csrf, "tests": ["NA"]})
    assert posted.status_code == 403
