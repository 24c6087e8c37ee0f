"""Review at speed: true counts and keyset pages, partial updates, one call for several
critical results, the analyser's N flag not shown as a warning."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from lab.results import service as results
from lab.results import views as result_views
from lab.tables import Result
from tests.conftest import actor
from tests.web.support import accession_for, order, sign_in
from tests.web.test_result_pages import enter, received, result_ids, typed_by_technician

PARTIAL = {"X-Lab-Partial": "review"}


def test_pages_of_the_queue_count_true_and_leave_nothing_out(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_views, "REVIEW_LIMIT", 4)
    token = sign_in(client, "t-physician")
    for n in range(4):
        placed = order(db, f"HP-PG{n}", ["NA", "K", "CRP"])
        number = accession_for(db, placed, "SERUM")
        received(client, token, number)
        enter(client, token, number, NA="140", K="4,1", CRP="3")
    page = client.get("/review")
    assert '<span class="count-badge" id="review-total">12</span>' in page.text
    assert "Viser 4 av 12." in page.text
    seen = set(re.findall(r'data-result="(\d+)"', page.text))
    link = re.search(r'rel="next" href="([^"]+)"', page.text)
    while link:
        page = client.get(link.group(1).replace("&amp;", "&"))
        seen |= set(re.findall(r'data-result="(\d+)"', page.text))
        link = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert len(seen) == 12


def test_verify_answers_with_the_tubes_block_and_the_new_count(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-PU1", ["NA", "K"])
    number = accession_for(db, placed, "SERUM")
    other = accession_for(db, order(db, "HP-PU2", ["NA"]), "SERUM")
    typed_by_technician(client, number, NA="140", K="4,1")
    typed_by_technician(client, other, NA="139")
    token = sign_in(client, "t-physician")
    ids = result_ids(db, number)
    first = client.post(f"/results/{ids['NA']}/verify", data={"csrf_token": token}, headers=PARTIAL)
    assert first.status_code == 200 and "<html" not in first.text
    assert first.headers["X-Lab-Count"] == "2"
    assert f'id="specimen-{number}"' in first.text
    assert (
        f'data-result="{ids["K"]}"' in first.text and f'data-result="{ids["NA"]}"' not in first.text
    )
    last = client.post(f"/results/{ids['K']}/verify", data={"csrf_token": token}, headers=PARTIAL)
    assert last.status_code == 200 and last.text.strip() == ""  # the tube leaves the list
    assert last.headers["X-Lab-Count"] == "1"
    assert "godkjent" in last.headers["X-Lab-Notice"] or "%" in last.headers["X-Lab-Notice"]
    refused = client.post(
        f"/results/{ids['K']}/verify", data={"csrf_token": token}, headers=PARTIAL
    )
    assert refused.status_code == 409


def test_one_call_covers_several_critical_results_of_the_tube(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-CC1", ["NA", "K"])
    number = accession_for(db, placed, "SERUM")
    typed_by_technician(client, number, NA="170", K="7,1")
    token = sign_in(client, "t-physician")
    ids = result_ids(db, number)
    page = client.get("/review").text
    assert "Én telefon for 2 kritiske svar" in page
    missing = client.post(
        f"/specimens/{number}/critical-call",
        data={"csrf_token": token, "result_id": [str(ids["NA"]), str(ids["K"])]},
        headers=PARTIAL,
    )
    assert missing.status_code == 422 and "telefonen er dokumentert" in missing.text
    done = client.post(
        f"/specimens/{number}/critical-call",
        data={
            "csrf_token": token,
            "result_id": [str(ids["NA"]), str(ids["K"])],
            "notified_person": "Lise Lien, MED3",
            "notified_at": "2026-11-27T08:15",
            "read_back": "yes",
        },
        headers=PARTIAL,
    )
    assert done.status_code == 200 and done.text.strip() == ""
    db.expire_all()
    for result_id in ids.values():
        result = db.get(Result, result_id)
        assert result is not None and result.status == "verified"
        record = result.versions[-1].critical_notification
        assert record.startswith("told Lise Lien, MED3 at 2026-11-27T07:15:00+00:00")
    shown = client.get(f"/results/{ids['K']}").text
    assert "Varslet Lise Lien, MED3 27.11.2026 08:15, verdien lest tilbake: ja" in shown


def test_the_analysers_normal_flag_is_not_a_warning(client: TestClient, db: Session) -> None:
    placed = order(db, "HP-NF1", ["NA", "K"])
    number = accession_for(db, placed, "SERUM")
    token = sign_in(client, "t-physician")
    received(client, token, number)
    for code, value, flags in (("NA", "140", "N"), ("K", "4.1", "N,W")):
        results.record(
            db,
            actor=actor("instrument", "demo"),
            measurement=results.Measurement(
                accession_number=number,
                test_code=code,
                value=value,
                instrument="demo",
                instrument_flags=flags,
            ),
        )
    db.commit()
    ids = result_ids(db, number)
    page = client.get("/review").text
    normal = page.split(f'id="result-{ids["NA"]}"')[1].split("</tr>")[0]
    assert "instrument-flags" not in normal
    flagged = page.split(f'id="result-{ids["K"]}"')[1].split("</tr>")[0]
    assert '<span class="instrument-flags">W</span>' in flagged
