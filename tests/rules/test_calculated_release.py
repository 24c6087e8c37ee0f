"""A calculated result is verified and released together with its inputs, never alone, and it
reports what the measurement chosen for each input gives (not the newest one)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.errors import Conflict
from lab.results import service as results
from lab.tables import ReportedResult, Result
from tests.results.test_derived import ANALYSER, LEGE, by_code, measure, rules, tube
from tests.web.support import sign_in


def _result(found: dict[str, object], code: str) -> Result:
    result = found[code]
    assert isinstance(result, Result)
    return result


def test_a_calculated_result_is_not_verified_while_its_input_waits(db: Session) -> None:
    number = tube(db, ["KREA"], date(1960, 3, 1), "M")
    results.record(
        db,
        actor=ANALYSER,
        measurement=measure(number, "KREA", "90", instrument_flags="CLOT"),
        rules=rules(),
    )
    egfr = _result(by_code(db, number), "EGFR")
    assert egfr.status == "awaiting_review"
    with pytest.raises(Conflict) as refused:
        results.verify(db, actor=LEGE, result_id=egfr.id)
    assert refused.value.code == "inputs_not_released"
    assert "KREA" in str(refused.value)
    db.refresh(egfr)
    assert egfr.status == "awaiting_review"


def test_a_rerun_input_recalculates_from_the_chosen_measurement(db: Session) -> None:
    # A woman of 60, creatinine 80 umol/L: eGFR 72.7 -> 73 (Inker et al. 2021, the published
    # example). The rerun gives 160 umol/L: Scr 1.810 mg/dL, /0.7 = 2.585;
    # 142 * 2.585^-1.200 * 0.9938^60 * 1.012 = 142 * 0.3199 * 0.6885 * 1.012 = 31.6 -> 32.
    number = tube(db, ["KREA"], date(1966, 1, 1), "F")
    results.record(
        db,
        actor=ANALYSER,
        measurement=measure(number, "KREA", "80", instrument_flags="CLOT"),
        rules=rules(),
    )
    results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "160"), rules=rules())
    found = by_code(db, number)
    krea, egfr = _result(found, "KREA"), _result(found, "EGFR")
    assert krea.status == "awaiting_review" and len(krea.measurements) == 2
    assert egfr.value_numeric == Decimal("32")  # from the newest creatinine, still held
    assert [h["text"] for h in egfr.holds] == ["released together with KREA"]  # no choice
    with pytest.raises(Conflict):
        results.verify(db, actor=LEGE, result_id=egfr.id)

    first = next(m for m in krea.measurements if m.number == 1)
    results.choose(
        db, actor=LEGE, result_id=krea.id, measurement_id=first.id, reason="", rules=rules()
    )
    db.flush()
    db.refresh(egfr)
    assert egfr.value_numeric == Decimal("73")  # recalculated from the creatinine chosen
    assert egfr.status == "awaiting_review"

    results.verify(db, actor=LEGE, result_id=krea.id)
    db.flush()
    db.refresh(egfr)
    assert egfr.status == "verified" and egfr.value_numeric == Decimal("73")
    messages = set(
        db.scalars(
            select(ReportedResult.message_id).where(
                ReportedResult.result_id.in_([egfr.id, krea.id])
            )
        )
    )
    assert len(messages) == 1  # one ORU


def test_choosing_another_measurement_after_release_corrects_the_calculated_result(
    db: Session,
) -> None:
    number = tube(db, ["KREA"], date(1966, 1, 1), "F")
    results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "80"), rules=rules())
    results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "160"), rules=rules())
    found = by_code(db, number)
    krea, egfr = _result(found, "KREA"), _result(found, "EGFR")
    assert krea.status == egfr.status == "verified" and egfr.value_numeric == Decimal("73")
    second = next(m for m in krea.measurements if m.number == 2)
    results.choose(
        db,
        actor=LEGE,
        result_id=krea.id,
        measurement_id=second.id,
        reason="the first run was clotted",
        rules=rules(),
    )
    db.flush()
    db.refresh(egfr)
    assert egfr.status == "corrected" and egfr.value_numeric == Decimal("32")


def test_one_call_covers_a_critical_corrected_calcium_and_its_input_in_any_order(
    client: TestClient, db: Session
) -> None:
    # 1.50 + 0.020 x (41.3 - 45) = 1.50 - 0.074 = 1.426 -> 1.43 mmol/L, below Fürst's 1.8.
    number = tube(db, ["CA", "ALB"], date(1950, 5, 5), "F")
    results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "CA", "1.50", instrument_flags="CLOT"),  # held for a person
            measure(number, "ALB", "45"),
        ],
        rules=rules(),
    )
    found = by_code(db, number)
    calcium, albumin, corrected = (_result(found, c) for c in ("CA", "ALB", "CAKORR"))
    assert (calcium.status, albumin.status) == ("awaiting_review", "verified")
    assert corrected.status == "awaiting_review" and str(corrected.value_numeric) == "1.43"
    db.flush()
    token = sign_in(client, "t-physician")
    done = client.post(
        f"/specimens/{number}/critical-call",
        data={
            "csrf_token": token,
            # the calculated result first, as a form may list it: its input goes first anyway
            "result_id": [str(corrected.id), str(calcium.id)],
            "notified_person": "Lise Lien, MED3",
            "notified_at": "2026-11-27T08:15",
            "read_back": "yes",
        },
        follow_redirects=False,
    )
    assert done.status_code in (200, 303), done.status_code
    db.expire_all()
    assert {db.get(Result, r.id).status for r in (calcium, corrected)} == {"verified"}  # type: ignore[union-attr]
