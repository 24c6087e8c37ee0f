"""The catalog page and the result page show each test's NLK code beside its LOINC code."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy.orm import Session

from tests.web.support import accession_for, order, sign_in
from tests.web.test_result_pages import enter, received, result_ids


def test_the_catalog_page_lists_loinc_and_nlk_in_both_languages(client: TestClient) -> None:
    sign_in(client, "t-technician")
    page = client.get("/catalog")
    assert page.status_code == 200 and "Analyseoversikt" in page.text
    row = page.text.split('id="test-NA"')[1].split("</tr>")[0]
    assert "2951-2" in row and "NOR25613" in row and "Natrium" in row
    krea = page.text.split('id="test-KREA"')[1].split("</tr>")[0]
    assert "14682-9" in krea and "2160-0" in krea  # the inbound alias is shown too
    english = client.get("/catalog?lang=en")
    assert "Test catalogue" in english.text and "NOR25613" in english.text


def test_the_result_page_names_the_test_by_loinc_and_nlk(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-NLK1", ["NA"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client, "t-technician")
    received(client, token, number)
    enter(client, token, number, NA="140")
    page = client.get(f"/results/{result_ids(db, number)['NA']}")
    assert page.status_code == 200
    assert "LOINC 2951-2 · NLK NOR25613" in page.text


def test_the_printed_report_names_each_test_by_loinc_and_nlk(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-NLK2", ["NA", "K"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client, "t-technician")
    received(client, token, number)
    enter(client, token, number, NA="140")
    report = client.get(f"/orders/{placed.filler_order_number}/report.pdf")
    assert report.status_code == 200
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(report.content)).pages)
    assert "Analysekoder" in text
    assert "LOINC 2951-2 · NLK NOR25613" in text  # NA, with a result
    assert "LOINC 2823-3 · NLK NOR25614" in text  # K, still pending
