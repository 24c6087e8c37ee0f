"""Search, the order page, add-on tests and cancellation, and the overview."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lab.catalog.rules import bump_version
from lab.tables import AuditEvent, LabTest, OrderedTest, Specimen
from lab.timeutil import utcnow
from testkit.patients import KARI_FNR
from tests.web.support import accession_for, order, sign_in


def test_search_finds_by_accession_order_numbers_identifier_and_name(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-S1", ["HB"])
    number = accession_for(db, placed, "EDTA")
    csrf = sign_in(client)

    def search(term: str, **kwargs: bool) -> Response:
        return client.post("/search", data={"q": term, "csrf_token": csrf}, **kwargs)

    # The form is POSTed: no term (a fødselsnummer) in the address, history or access log.
    assert 'method="post" action="/search"' in client.get("/search").text
    from_address = client.get(f"/search?q={KARI_FNR}").text  # a term in the address is not read
    assert KARI_FNR not in from_address and "Østbø" not in from_address
    by_accession = search(number, follow_redirects=False)
    assert by_accession.headers["location"] == f"/specimens/{number}"
    by_filler = search(f"{placed.filler_order_number}", follow_redirects=False)
    assert by_filler.headers["location"] == f"/orders/{placed.filler_order_number}"
    by_placer = search("HP-S1", follow_redirects=False)
    assert by_placer.headers["location"] == f"/orders/{placed.filler_order_number}"
    by_fnr = search(f"{KARI_FNR}")
    assert "Østbø, Kari Åse" in by_fnr.text and placed.filler_order_number in by_fnr.text
    by_name = search("østb")
    assert placed.filler_order_number in by_name.text
    searched = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "read.patient.search")
    ).all()
    assert searched and searched[-1].patient_id == placed.patient_id
    nothing = search("Nordmann")
    assert "Fant ingenting" in nothing.text
    wrong_digit = number[:-1] + str((int(number[-1]) + 1) % 10)
    mistyped = search(f"{wrong_digit}")
    assert mistyped.status_code == 422 and "feil kontrollsiffer" in mistyped.text


def test_order_page_add_on_and_cancel(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-O1", ["NA", "K"])
    filler = placed.filler_order_number
    token = sign_in(client)
    page = client.get(f"/orders/{filler}")
    assert page.status_code == 200
    assert "Østbø, Kari Åse" in page.text and accession_for(db, placed, "SERUM") in page.text
    added = client.post(
        f"/orders/{filler}/tests", data={"csrf_token": token, "code": "CRP"}, follow_redirects=False
    )
    assert added.headers["location"] == f"/orders/{filler}?done=test_added"
    page = client.get(added.headers["location"])
    assert "Analysen er lagt til." in page.text and "tillegg" in page.text
    twice = client.post(f"/orders/{filler}/tests", data={"csrf_token": token, "code": "CRP"})
    assert twice.status_code == 409 and "er allerede rekvirert" in twice.text
    no_reason = client.post(
        f"/orders/{filler}/cancel", data={"csrf_token": token, "codes": ["K"], "reason": ""}
    )
    assert no_reason.status_code == 422 and "Skriv hvorfor analysene kanselleres." in no_reason.text
    assert 'value="K" checked' in no_reason.text  # the ticked test stays ticked
    none_ticked = client.post(f"/orders/{filler}/cancel", data={"csrf_token": token, "reason": "x"})
    assert none_ticked.status_code == 422
    cancelled = client.post(
        f"/orders/{filler}/cancel",
        data={"csrf_token": token, "codes": ["K", "CRP"], "reason": "feil pasient"},
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    page = client.get(cancelled.headers["location"])
    assert page.text.count('class="cancelled"') == 2 and "feil pasient" in page.text
    reads = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "read.order", AuditEvent.entity_id == filler)
    ).all()
    assert len(reads) >= 3


def test_overview_lists_what_needs_attention(client: TestClient, db: Session) -> None:
    routine = order(db, "HP-OV1", ["HB"])
    stat = order(db, "HP-OV2", ["NA", "K"], priority="stat")
    token = sign_in(client, "t-physician")
    home = client.get("/").text
    awaiting = home.split('id="awaiting"')[1].split("</section>")[0]
    # Stat first, however old the routine tube is.
    assert awaiting.index(accession_for(db, stat, "SERUM")) < awaiting.index(
        accession_for(db, routine, "EDTA")
    )
    serum = accession_for(db, stat, "SERUM")
    client.post("/specimens/receive", data={"csrf_token": token, "accession_number": serum})
    client.post(
        f"/specimens/{serum}/results", data={"csrf_token": token, "value_NA": "140"}
    )  # K still pending: received, not finished
    home = client.get("/").text
    assert serum in home.split('id="in-lab"')[1].split("</section>")[0]
    client.post(f"/specimens/{serum}/results", data={"csrf_token": token, "value_K": "7,1"})
    home = client.get("/").text
    critical = home.split('id="critical"')[1].split("</section>")[0]
    assert serum in critical and "flag-HH" in critical
    assert "Østbø" not in home  # the overview names tubes, not patients


def test_overdue_work_counts_against_turnaround_minutes(client: TestClient, db: Session) -> None:
    db.execute(update(LabTest).where(LabTest.code == "CRP").values(turnaround_minutes=60))
    db.execute(update(LabTest).where(LabTest.code == "NA").values(turnaround_minutes=None))
    bump_version(db)  # what an admin's catalog change does
    placed = order(db, "HP-TAT", ["CRP", "NA"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client)
    client.post("/specimens/receive", data={"csrf_token": token, "accession_number": number})
    overdue = client.get("/").text.split('id="overdue"')[1].split("</section>")[0]
    assert number not in overdue
    # 75 minutes pass: the tube was received that long ago, and CRP was due 15 minutes ago.
    received = utcnow() - timedelta(minutes=75)
    tube = db.scalar(select(Specimen).where(Specimen.accession_number == number))
    assert tube is not None
    db.execute(update(Specimen).where(Specimen.id == tube.id).values(received_at=received))
    db.execute(
        update(OrderedTest)
        .where(OrderedTest.specimen_id == tube.id, OrderedTest.due_at.is_not(None))
        .values(due_at=received + timedelta(minutes=60))
    )
    db.commit()
    overdue = client.get("/").text.split('id="overdue"')[1].split("</section>")[0]
    assert number in overdue and "CRP" in overdue and "NA" not in overdue
    assert "15 min" in overdue


def test_status_strip_shows_registered_components_only(client: TestClient) -> None:
    sign_in(client)
    assert "status-strip" not in client.get("/").text
    client.app.state.components.register("astm:cobas", lambda: {"state": "down"})  # type: ignore[attr-defined]
    strip = client.get("/").text.split('class="status-strip"')[1].split("</ul>")[0]
    assert "astm:cobas: nede" in strip and "state-down" in strip
