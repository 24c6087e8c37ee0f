"""Worklist, manual result entry, review and verification, critical calls, correction."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import AuditEvent, Result
from tests.web.support import accession_for, order, sign_in


def received(client: TestClient, token: str, number: str) -> None:
    response = client.post(
        "/specimens/receive", data={"csrf_token": token, "accession_number": number}
    )
    assert response.status_code == 200


def enter(client: TestClient, token: str, number: str, **values: str) -> httpx.Response:
    data = {"csrf_token": token, **{f"value_{code}": v for code, v in values.items()}}
    response: httpx.Response = client.post(
        f"/specimens/{number}/results", data=data, follow_redirects=False
    )
    return response


def typed_by_technician(client: TestClient, number: str, **values: str) -> None:
    """Receive the tube and type the values in as the technician, in a browser of their own:
    whoever types a value in does not release it (four eyes)."""
    with TestClient(client.app) as bio:
        token = sign_in(bio, "t-technician")
        received(bio, token, number)
        assert enter(bio, token, number, **values).status_code == 303


def result_ids(db: Session, number: str) -> dict[str, int]:
    from lab.tables import LabTest, Specimen

    rows = db.execute(
        select(LabTest.code, Result.id)
        .join(Result, Result.test_id == LabTest.id)
        .join(Specimen, Specimen.id == Result.specimen_id)
        .where(Specimen.accession_number == number)
    ).all()
    return {code: rid for code, rid in rows}


def test_worklist_per_bench_puts_stat_first(client: TestClient, db: Session) -> None:
    routine = order(db, "HP-W1", ["HB", "NA"])
    stat = order(db, "HP-W2", ["LPK"], priority="stat")
    token = sign_in(client)
    for placed, container in ((routine, "EDTA"), (routine, "SERUM"), (stat, "EDTA")):
        received(client, token, accession_for(db, placed, container))
    edta = client.get("/worklist?bench=EDTA").text
    first, second = accession_for(db, stat, "EDTA"), accession_for(db, routine, "EDTA")
    assert edta.index(first) < edta.index(second)
    assert accession_for(db, routine, "SERUM") not in edta
    assert "hematologi" in edta  # the bench's name
    assert accession_for(db, routine, "SERUM") in client.get("/worklist").text


def test_entry_shows_units_and_ranges_and_keeps_bad_input(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-E1", ["NA", "K", "CRP"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client)
    received(client, token, number)
    page = client.get(f"/specimens/{number}/results")
    assert page.status_code == 200
    assert "mmol/L" in page.text and "137,0–145,0" in page.text
    response = enter(client, token, number, NA="140", K="fire komma to")
    assert response.status_code == 422
    assert 'id="error_K"' in response.text and "skal ha et tall" in response.text
    assert 'value="fire komma to"' in response.text and 'value="140"' in response.text
    # All or nothing: the good value was not kept either.
    assert result_ids(db, number) == {}
    saved = enter(client, token, number, NA="140", K="4,1")
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/specimens/{number}/results?done=results_saved"
    assert set(result_ids(db, number)) == {"NA", "K"}
    assert "Skriv minst ett resultat" in enter(client, token, number).text
    # A value out of any sane range, or a negative concentration, is refused at the field too.
    crp = enter(client, token, number, CRP="1e400")
    assert crp.status_code == 422 and 'id="error_CRP"' in crp.text
    assert "CRP skal ha et tall: «1e400» er utenfor ethvert rimelig område" in crp.text
    negative = enter(client, token, number, CRP="-5").text
    assert "CRP skal ha et tall: «-5» er negativ, og denne størrelsen kan ikke være under null" in (
        negative
    )
    assert "«fire komma to» er ikke et tall (skriv f.eks. 5,2 eller &lt;5)" in response.text


def test_review_verify_one_and_all_unremarkable(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-V1", ["NA", "K", "KREA"])
    number = accession_for(db, placed, "SERUM")
    sign_in(client, "t-technician")
    token = sign_in(client, "t-technician")
    received(client, token, number)
    assert enter(client, token, number, NA="128", K="4,0", KREA="80").status_code == 303
    client.cookies.clear()
    token = sign_in(client, "t-reviewer")
    review = client.get("/review")
    assert "flag-L" in review.text and "Godkjenn 2 uten flagg" in review.text
    ids = result_ids(db, number)
    bulk = client.post(
        f"/specimens/{number}/verify-unremarkable",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert bulk.headers["location"] == "/review?done=verified_many&count=2"
    assert "2 resultater er godkjent" in client.get(bulk.headers["location"]).text
    one = client.post(
        f"/results/{ids['NA']}/verify",
        data={"csrf_token": token, "comment": "kontrollert"},
        follow_redirects=False,
    )
    assert one.status_code == 303 and one.headers["location"] == "/review?done=verified"
    statuses = {r.id: r.status for r in db.scalars(select(Result)).all()}
    assert {statuses[i] for i in ids.values()} == {"verified"}
    again = client.post(f"/results/{ids['NA']}/verify", data={"csrf_token": token})
    assert again.status_code == 409 and "allerede godkjent av" in again.text


def test_critical_result_needs_the_call_documented(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-V2", ["K"])
    number = accession_for(db, placed, "SERUM")
    bio = TestClient(client.app)  # the technician types the value; the physician releases it
    bio_token = sign_in(bio, "t-technician")
    received(bio, bio_token, number)
    enter(bio, bio_token, number, K="7,1")
    token = sign_in(client, "t-physician")
    result_id = result_ids(db, number)["K"]
    review = client.get("/review")
    assert "flag-HH" in review.text and 'name="notified_person"' in review.text
    refused = client.post(f"/results/{result_id}/verify", data={"csrf_token": token})
    assert refused.status_code == 422
    assert "kan ikke frigis før telefonen er dokumentert" in refused.text
    half = client.post(
        f"/results/{result_id}/verify",
        data={
            "csrf_token": token,
            "notified_person": "Lege Lise, MED3",
            "notified_at": "2026-11-27T08:15",
        },
    )
    assert half.status_code == 422 and "lest tilbake" in half.text
    assert 'value="Lege Lise, MED3"' in half.text and 'value="2026-11-27T08:15"' in half.text
    done = client.post(
        f"/results/{result_id}/verify",
        data={
            "csrf_token": token,
            "notified_person": "Lege Lise, MED3",
            "notified_at": "2026-11-27T08:15",
            "read_back": "yes",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = client.get(f"/results/{result_id}")
    # Stored in UTC (08:15 in Oslo in November is 07:15 UTC), shown in Oslo time and bokmål.
    assert "Varslet Lege Lise, MED3 27.11.2026 08:15, verdien lest tilbake: ja" in page.text
    db.expire_all()
    stored = db.get(Result, result_id)
    assert stored is not None
    record = stored.versions[-1].critical_notification
    assert record == "told Lege Lise, MED3 at 2026-11-27T07:15:00+00:00, read back: yes"


def test_physician_corrects_with_a_reason_and_the_report_says_corrected(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-C1", ["CRP"])
    number = accession_for(db, placed, "SERUM")
    typed_by_technician(client, number, CRP="12")
    token = sign_in(client, "t-physician")
    result_id = result_ids(db, number)["CRP"]
    client.post(f"/results/{result_id}/verify", data={"csrf_token": token})
    page = client.get(f"/results/{result_id}")
    assert f'action="/results/{result_id}/correct"' in page.text
    missing = client.post(
        f"/results/{result_id}/correct", data={"csrf_token": token, "value": "21", "reason": ""}
    )
    assert missing.status_code == 422
    assert "Skriv en begrunnelse." in missing.text and 'value="21"' in missing.text
    done = client.post(
        f"/results/{result_id}/correct",
        data={"csrf_token": token, "value": "21", "reason": "sifrene byttet"},
        follow_redirects=False,
    )
    assert done.headers["location"] == f"/results/{result_id}?done=corrected"
    versions = client.get(done.headers["location"]).text
    assert "sifrene byttet" in versions and "korrigert" in versions
    report = client.get(f"/orders/{placed.filler_order_number}/report.pdf")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(report.content)).pages)
    assert placed.filler_order_number in text and "21" in text
    cumulative = client.get(f"/patients/{placed.patient_id}/cumulative.pdf?test=CRP")
    assert cumulative.status_code == 200 and cumulative.content.startswith(b"%PDF")


def test_reviewer_may_not_correct(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-C2", ["CRP"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client, "t-reviewer")
    received(client, token, number)
    enter(client, token, number, CRP="12")
    result_id = result_ids(db, number)["CRP"]
    client.post(f"/results/{result_id}/verify", data={"csrf_token": token})
    assert "/correct" not in client.get(f"/results/{result_id}").text
    response = client.post(
        f"/results/{result_id}/correct", data={"csrf_token": token, "value": "1", "reason": "x"}
    )
    assert response.status_code == 403


def test_review_page_shows_previous_result_change_and_analyser_flags(
    client: TestClient, db: Session
) -> None:
    from lab.results import service as results
    from tests.conftest import actor

    first = order(db, "HP-D1", ["KREA"])
    second = order(db, "HP-D2", ["KREA"])
    earlier = accession_for(db, first, "SERUM")
    typed_by_technician(client, earlier, KREA="80")
    token = sign_in(client, "t-reviewer")
    client.post(f"/results/{result_ids(db, earlier)['KREA']}/verify", data={"csrf_token": token})
    later = accession_for(db, second, "SERUM")
    results.record(
        db,
        actor=actor("instrument", "cobas"),
        measurement=results.Measurement(
            accession_number=later,
            test_code="KREA",
            value="120",
            instrument="cobas-c311",
            instrument_flags="HEM",
        ),
    )
    db.commit()
    review = client.get("/review").text
    row = review.split(f'id="result-{result_ids(db, later)["KREA"]}"')[1].split("</tr>")[0]
    assert "80" in row and "+40" in row and "(+50 %)" in row
    assert '<span class="instrument-flags">HEM</span>' in row
    # An analyser flag keeps the result out of "verify all unremarkable".
    assert "uten flagg" not in review.split(f'id="specimen-{later}"')[1].split("</header>")[0]
    reads = db.scalars(
        select(AuditEvent.entity_id).where(
            AuditEvent.action == "read.result.review", AuditEvent.actor_name == "t-reviewer"
        )
    ).all()
    assert later in reads


def test_lang_switch_to_english_is_remembered(client: TestClient) -> None:
    sign_in(client)
    english = client.get("/worklist?lang=en")
    assert "Worklist" in english.text and 'lang="en"' in english.text
    assert "Worklist" in client.get("/worklist").text  # the cookie keeps the choice
    assert "Arbeidsliste" in client.get("/worklist?lang=nb").text
    assert re.search(r'<html lang="nb">', client.get("/worklist").text)


def test_review_page_shows_every_reason_and_the_delta_with_its_limit(
    client: TestClient, db: Session
) -> None:
    from datetime import UTC, datetime, timedelta

    from lab.results import service as results
    from lab.results.judging import ActiveRules
    from tests.conftest import actor
    from tests.rules.helpers import demo_ruleset

    rules = ActiveRules(autoverification=demo_ruleset())
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    first, second = order(db, "HP-H1", ["KREA"]), order(db, "HP-H2", ["KREA"])
    for placed, value, when in ((first, "84", at), (second, "160", at + timedelta(hours=20))):
        number = accession_for(db, placed, "SERUM")
        results.record(
            db,
            actor=actor("instrument", "cobas"),
            measurement=results.Measurement(
                accession_number=number,
                test_code="KREA",
                value=value,
                observed_at=when,
                instrument="cobas-c311",
                instrument_flags="CLOT",
                flag_profile="cobas",
            ),
            rules=rules,
        )
    db.commit()
    sign_in(client, "t-reviewer")
    review = client.get("/review").text
    later = accession_for(db, second, "SERUM")
    row = review.split(f'id="result-{result_ids(db, later)["KREA"]}"')[1].split("</tr>")[0]
    # Each reason by its name and the rule's figures, in bokmål (the rules write English).
    assert "Deltasjekk</strong>: endret fra 84 til 160 (grense ±26,5 innen 2 døgn)" in row
    assert "Instrumentflagg</strong>: analysatorflagg CLOT" in row
    assert "within" not in row and "analyser flag" not in row


def test_a_further_measurement_is_chosen_on_the_result_page(
    client: TestClient, db: Session
) -> None:
    from lab.results import service as results
    from tests.conftest import actor

    placed = order(db, "HP-M1", ["NA"])
    number = accession_for(db, placed, "SERUM")
    for value in ("150", "141"):
        results.record(
            db,
            actor=actor("instrument", "cobas"),
            measurement=results.Measurement(
                accession_number=number, test_code="NA", value=value, instrument="cobas-c311"
            ),
        )
    db.commit()
    token = sign_in(client, "t-reviewer")
    result_id = result_ids(db, number)["NA"]
    page = client.get(f"/results/{result_id}").text
    assert 'id="measurements"' in page and "omkjøring" in page
    first = db.get(Result, result_id)
    assert first is not None
    first_measurement = first.measurements[0].id
    chosen = client.post(
        f"/results/{result_id}/choose",
        data={"csrf_token": token, "measurement_id": str(first_measurement)},
        follow_redirects=False,
    )
    assert chosen.status_code == 303
    db.expire_all()
    assert str(db.get(Result, result_id).value_numeric) == "150"  # type: ignore[union-attr]
    again = client.post(
        f"/results/{result_id}/choose",
        data={"csrf_token": token, "measurement_id": str(first_measurement)},
    )
    assert again.status_code == 409 and "reported already" in again.text


def test_the_cumulative_page_shows_the_newest_first_a_page_at_a_time(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.results import history_views

    monkeypatch.setattr(history_views, "HISTORY_PAGE", 2)
    numbers = []
    for n, value in enumerate(("31", "32", "33")):
        placed = order(db, f"HP-CUM{n}", ["CRP"])
        numbers.append(accession_for(db, placed, "SERUM"))
        typed_by_technician(client, numbers[-1], CRP=value)
    token = sign_in(client, "t-physician")
    for number in numbers:
        verified = client.post(
            f"/results/{result_ids(db, number)['CRP']}/verify", data={"csrf_token": token}
        )
        assert verified.status_code in (200, 303)
    patient_id = placed.patient_id
    order_page = client.get(f"/orders/{placed.filler_order_number}").text
    assert f'href="/patients/{patient_id}/cumulative?test=CRP"' in order_page
    first = client.get(f"/patients/{patient_id}/cumulative?test=crp")
    assert first.status_code == 200 and "Kumulativt: CRP" in first.text
    # Newest first, two a page: this test's last two tubes, then a link to older results.
    assert first.text.index(numbers[2]) < first.text.index(numbers[1])
    assert numbers[0] not in first.text
    older = re.search(r'href="([^"]*before=[^"]*)">Eldre resultater', first.text)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and numbers[0] in second.text
    assert numbers[1] not in second.text and "Første side" in second.text
    reads = db.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "read.result.cumulative", AuditEvent.patient_id == patient_id
        )
    ).all()
    assert len(reads) >= 2  # each page's read of the history is audited
    assert client.get(f"/patients/{patient_id}/cumulative?test=NOPE").status_code == 404
    assert client.get(f"/patients/{patient_id}/cumulative").status_code == 422


def test_the_worklist_counts_its_tubes_and_pages_on(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.results import views

    monkeypatch.setattr(views, "WORKLIST_TUBES", 1)
    routine = order(db, "HP-WP1", ["HB"])
    stat = order(db, "HP-WP2", ["LPK"], priority="stat")
    token = sign_in(client)
    for placed in (routine, stat):
        received(client, token, accession_for(db, placed, "EDTA"))
    first = client.get("/worklist?bench=EDTA").text
    total = int(re.search(r'id="worklist-total">(\d+)<', first).group(1))  # type: ignore[union-attr]
    assert total >= 2 and f"Viser 1 av {total}" in first
    # One tube a page: the stat tube first, the routine one on a later page.
    assert accession_for(db, stat, "EDTA") in first
    assert accession_for(db, routine, "EDTA") not in first
    seen, link = [], re.search(r'href="(/worklist\?[^"]*after=[^"]*)"', first)
    while link is not None:
        page = client.get(link.group(1).replace("&amp;", "&")).text
        assert "Første side" in page and "bench=EDTA" in link.group(1)
        seen.append(page)
        link = re.search(r'href="(/worklist\?[^"]*after=[^"]*)"', page)
    assert any(accession_for(db, routine, "EDTA") in page for page in seen)
    assert all(accession_for(db, stat, "EDTA") not in page for page in seen)
