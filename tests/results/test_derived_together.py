"""Calculated tests and reflex tests from one analyser message: the tube's one write carries the
calculated result, the reflex tests are added once, and a formula waiting for a reflex test's
result is calculated when that result comes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from lab.results import service as results
from lab.specimens import service as specimens
from tests.results.test_derived import ANALYSER, by_code, measure, rules, tube


def test_one_message_calculates_egfr_and_adds_both_reflex_tests_once(db: Session) -> None:
    number = tube(db, ["TSH", "KREA", "CA"], date(1966, 1, 1), "F")
    message = [
        measure(number, "TSH", "9.5"),  # above its interval: FT4 is added
        measure(number, "KREA", "80"),  # eGFR 73 for a woman of 60
        measure(number, "CA", "2.00"),  # below 2.15: albumin is added
    ]
    for _ in range(2):  # the analyser sends the message twice
        results.record_tube(db, actor=ANALYSER, measurements=message, rules=rules())
    found = by_code(db, number)
    assert set(found) == {"TSH", "KREA", "CA", "EGFR"}
    egfr = found["EGFR"]
    assert str(egfr.value_numeric) == "73" and egfr.status == found["KREA"].status  # type: ignore[attr-defined]
    specimen = specimens.get_by_accession(db, number)
    assert sorted(t.test.code for t in specimens.pending_tests(db, specimen)) == ["ALB", "FT4"]
    added = {t.test.code: t for t in specimens.tests_of(db, specimen) if t.added_by_rule}
    assert sorted(added) == ["ALB", "EGFR", "FT4"]  # each once, though the message came twice
    assert added["FT4"].added_by_rule.startswith("reflex TSH-FT4")
    assert added["ALB"].added_by_rule.startswith("reflex CA-ALB")
    assert added["EGFR"].added_by_rule.startswith("calculated EGFR")
    ordered = {t.test.code: t.status for t in specimens.tests_of(db, specimen)}
    assert ordered["EGFR"] == ordered["KREA"] == "verified"  # autoverified together
    assert ordered["FT4"] == ordered["ALB"] == "ordered"  # to run on this tube
    assert specimen.status != "completed"  # two tests are still to run

    # The albumin the reflex asked for comes: the corrected calcium is calculated from both.
    results.record_tube(
        db, actor=ANALYSER, measurements=[measure(number, "ALB", "40")], rules=rules()
    )
    found = by_code(db, number)
    corrected = found["CAKORR"]
    # 2.00 + 0.020 x (41.3 - 40) = 2.026 mmol/L
    assert abs(corrected.value_numeric - Decimal("2.026")) < Decimal("0.01")  # type: ignore[attr-defined]
    assert [t.test.code for t in specimens.pending_tests(db, specimen)] == ["FT4"]
