"""Analyser pages: the state of each analyser and the queue of unmatched results."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.tables import AuditEvent, Result, UnmatchedResult
from tests.web.support import accession_for, order, sign_in


def _unmatched(db: Session, n: int = 1, *, code: str = "NA", value: str = "140") -> list[int]:
    rows = [
        UnmatchedResult(
            fingerprint=f"fp-{code}-{value}-{i}",
            instrument="demo",
            specimen_id=f"99999{i}",
            instrument_test_code=code,
            test_code=code,
            value=value,
            unit="mmol/L",
            instrument_flags="",
            result_status="F",
            operator="",
            reason="no specimen with accession number 999990",
            reason_code="specimen_unknown",
            reason_params={"number": "999990"},
            raw_record=f"R|1|^^^{code}|{value}|mmol/L",
        )
        for i in range(n)
    ]
    db.add_all(rows)
    db.commit()
    return [row.id for row in rows]


def test_the_analyser_page_lists_the_configured_analysers(client: TestClient, db: Session) -> None:
    _unmatched(db, 2)
    sign_in(client, "t-admin")
    page = client.get("/analysers")
    assert page.status_code == 200
    assert 'id="analyser-demo"' in page.text and "2 venter" in page.text
    # The administrator operates analysers but sees no patient values.
    assert client.get("/analysers/unmatched").status_code == 403


def test_the_unmatched_queue_resolves_onto_a_specimen_and_discards_with_a_reason(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-UNM1", ["NA"])
    tube = accession_for(db, placed, "SERUM")
    first, second, *_ = _unmatched(db, 60)
    csrf = sign_in(client, "t-technician")
    page = client.get("/analysers/unmatched")
    assert page.status_code == 200
    assert '<span class="count-badge">60</span>' in page.text
    assert page.text.count('class="card unmatched') == 50 and 'rel="next"' in page.text
    # Why each waits, in bokmål (the analyser side writes it in English).
    assert "Ingen prøve har prøvenummer 999990." in page.text
    assert "no specimen with accession number" not in page.text
    link = re.search(r'rel="next" href="([^"]+)"', page.text)
    assert link is not None
    assert client.get(link.group(1)).text.count('class="card unmatched') == 10

    # A wrong accession number: the form comes back with the error next to the field.
    wrong = client.post(
        f"/analysers/unmatched/{first}/resolve",
        data={"csrf_token": csrf, "accession_number": "12", "test_code": "NA", "note": ""},
    )
    assert wrong.status_code in (404, 422)
    block = wrong.text.split(f'id="unmatched-{first}"')[1].split("</section>")[0]
    assert 'class="field-error"' in block and 'value="12"' in block

    resolved = client.post(
        f"/analysers/unmatched/{first}/resolve",
        data={"csrf_token": csrf, "accession_number": tube, "test_code": "na", "note": "label"},
        follow_redirects=False,
    )
    assert resolved.status_code == 303
    assert "venter på godkjenning" in client.get(resolved.headers["location"]).text
    db.expire_all()
    row = db.get(UnmatchedResult, first)
    assert row is not None and row.status == "resolved" and row.result_id is not None
    result = db.get(Result, row.result_id)
    assert result is not None and str(result.value_numeric) == "140"

    empty = client.post(f"/analysers/unmatched/{second}/discard", data={"csrf_token": csrf})
    assert empty.status_code == 422
    block = empty.text.split(f'id="unmatched-{second}"')[1].split("</section>")[0]
    assert "Skriv hvorfor resultatet forkastes." in block
    discarded = client.post(
        f"/analysers/unmatched/{second}/discard",
        data={"csrf_token": csrf, "reason": "rerun on the right tube"},
        follow_redirects=False,
    )
    assert discarded.status_code == 303
    actions = set(
        db.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "unmatched_result"))
    )
    # Each look at the queue is audited too (its values and messages belong to patients).
    assert actions == {
        "instrument.unmatched.resolve",
        "instrument.unmatched.discard",
        "read.unmatched_result",
    }
    assert '<span class="count-badge">58</span>' in client.get("/analysers/unmatched").text


def test_a_unit_written_otherwise_is_resolved_by_naming_its_ucum_unit(
    client: TestClient, db: Session
) -> None:
    placed = order(db, "HP-UNM2", ["TPK"])
    tube = accession_for(db, placed, "EDTA")
    row = UnmatchedResult(
        fingerprint="fp-unit-xn",
        instrument="demo",
        specimen_id=tube,
        instrument_test_code="PLT",
        test_code="TPK",
        value="251",
        unit="x10^3/uL",
        instrument_flags="",
        result_status="F",
        operator="",
        reason="unit 'x10^3/uL' is not a UCUM unit",
        raw_record="R|4|^^^^PLT^1|251|x10&S&3/uL",
        raw_message=f"H|\\^&|||XN-350\rP|1\rO|1||^^{tube}^B\rR|4|^^^^PLT^1|251|x10&S&3/uL\rL|1|N",
    )
    db.add(row)
    db.commit()
    csrf = sign_in(client, "t-technician")
    page = client.get("/analysers/unmatched")
    block = page.text.split(f'id="unmatched-{row.id}"')[1].split("</section>")[0]
    assert "Hele meldingen" in block and "R|4|^^^^PLT^1|251|x10&amp;S&amp;3/uL" in block
    data = {"csrf_token": csrf, "accession_number": tube, "test_code": "TPK", "note": ""}
    as_sent = client.post(f"/analysers/unmatched/{row.id}/resolve", data=data)
    assert as_sent.status_code == 422 and "not a UCUM unit" in as_sent.text
    wrong_unit = client.post(
        f"/analysers/unmatched/{row.id}/resolve", data={**data, "unit": "mg/dL"}
    )
    block = wrong_unit.text.split(f'id="unmatched-{row.id}"')[1].split("</section>")[0]
    assert wrong_unit.status_code == 422 and 'value="mg/dL"' in block and "field-error" in block
    resolved = client.post(
        f"/analysers/unmatched/{row.id}/resolve",
        data={**data, "unit": "10*3/uL"},
        follow_redirects=False,
    )
    assert resolved.status_code == 303
    db.expire_all()
    kept = db.get(UnmatchedResult, row.id)
    assert kept is not None and kept.result_id is not None
    assert "unit read as 10*3/uL" in kept.handling_note
    result_page = client.get(f"/results/{kept.result_id}")
    assert "251 10*9/L" in result_page.text and "sendt som 251 x10^3/uL" in result_page.text
