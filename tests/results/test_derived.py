"""Calculated tests and reflexes in the recording transaction: eGFR from creatinine, released
with it; FT4 added to an abnormal TSH, once, and withdrawn when a correction removes the cause."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.results import service as results
from lab.results.judging import ActiveRules
from lab.results.queries import results_of_tube, stored
from lab.results.service import Measurement
from lab.rules import FormulaInput, ReflexSet, parse_formulas, parse_reflexes
from lab.rules.calculated import FormulaSet
from lab.rules.demo import demo_texts
from lab.specimens import service as specimens
from lab.tables import OrderedTest, ReportedResult
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor
from tests.results.test_autoverification import patient
from tests.rules.helpers import demo_catalog, demo_ruleset

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
LEGE = actor(Role.PHYSICIAN)
AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
_placers = itertools.count(1)


@cache
def formulas() -> FormulaSet:
    inputs = {}
    for code, facts in demo_catalog().items():
        limits = demo_ruleset().for_test(code)
        low = limits.plausible_low if limits is not None else None
        high = limits.plausible_high if limits is not None else None
        inputs[code] = FormulaInput(
            unit=facts.unit,
            low=float(low) if low is not None else None,
            high=float(high) if high is not None else None,
        )
    return parse_formulas(demo_texts()["formulas"], version=1, known_tests=inputs)


@cache
def reflexes() -> ReflexSet:
    return parse_reflexes(demo_texts()["reflex"], version=1, known_tests=demo_catalog())


def rules(*, autoverification: bool = True) -> ActiveRules:
    return ActiveRules(
        autoverification=demo_ruleset() if autoverification else None,
        formulas=formulas(),
        reflex=reflexes(),
    )


def tube(db: Session, tests: list[str], born: date | None, sex: str) -> str:
    order = place(db, BIO, placer=f"DV-{next(_placers)}", tests=tests, patient=patient(born, sex))
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return number


def measure(number: str, code: str, value: str, **kw: object) -> Measurement:
    fields: dict[str, object] = {
        "instrument": "cobas-1",
        "observed_at": AT,
        "flag_profile": "cobas",
    }
    fields.update(kw)
    return Measurement(accession_number=number, test_code=code, value=value, **fields)  # type: ignore[arg-type]


def by_code(db: Session, number: str) -> dict[str, object]:
    from lab.catalog.rules import snapshot

    codes = snapshot(db).by_id
    return {
        codes[r.test_id].code: r
        for r in results_of_tube(db, specimens.get_by_accession(db, number))
    }


def test_egfr_is_calculated_and_released_with_its_creatinine(db: Session) -> None:
    # The published example: a woman of 60 with creatinine 80 umol/L has an eGFR of 72.7.
    number = tube(db, ["KREA"], date(1966, 1, 1), "F")
    results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "80"), rules=rules())
    found = by_code(db, number)
    egfr, krea = found["EGFR"], found["KREA"]
    assert str(egfr.value_numeric) == "73" and egfr.unit == "mL/min/{1.73_m2}"  # type: ignore[attr-defined]
    assert krea.status == egfr.status == "verified"  # type: ignore[attr-defined]
    added = db.scalar(select(OrderedTest).where(OrderedTest.id == egfr.ordered_test_id))  # type: ignore[attr-defined]
    assert added is not None and added.added_by_rule.startswith("calculated EGFR")
    db.flush()
    messages = {
        r.result_id: r.message_id
        for r in db.scalars(
            select(ReportedResult).where(
                ReportedResult.result_id.in_([egfr.id, krea.id])  # type: ignore[attr-defined]
            )
        )
    }
    assert len(messages) == 2 and len(set(messages.values())) == 1  # one ORU


def test_no_egfr_for_a_child_and_the_reason_is_shown(db: Session) -> None:
    number = tube(db, ["KREA"], date(2016, 6, 1), "M")
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(number, "KREA", "40"), rules=rules()
    )
    assert "EGFR" not in by_code(db, number)
    judgement = stored(db, outcome).versions[0].judgement
    assert judgement is not None and "under 18" in judgement["not_calculated"]["EGFR"]


def test_a_held_creatinine_holds_its_egfr_until_a_person_verifies_both(db: Session) -> None:
    number = tube(db, ["KREA"], date(1960, 3, 1), "M")
    results.record(
        db,
        actor=ANALYSER,
        measurement=measure(number, "KREA", "90", instrument_flags="CLOT"),
        rules=rules(),
    )
    found = by_code(db, number)
    egfr, krea = found["EGFR"], found["KREA"]
    assert krea.status == egfr.status == "awaiting_review"  # type: ignore[attr-defined]
    assert [h["text"] for h in egfr.holds] == ["released together with KREA"]  # type: ignore[attr-defined]
    results.verify(db, actor=LEGE, result_id=krea.id)  # type: ignore[attr-defined]
    db.flush()
    db.refresh(egfr)
    assert egfr.status == "verified" and egfr.verified_by == LEGE.username  # type: ignore[attr-defined]
    db.flush()
    messages = set(
        db.scalars(
            select(ReportedResult.message_id).where(
                ReportedResult.result_id.in_([egfr.id, krea.id])  # type: ignore[attr-defined]
            )
        )
    )
    assert len(messages) == 1


def test_a_corrected_creatinine_corrects_its_egfr(db: Session) -> None:
    number = tube(db, ["KREA"], date(1966, 1, 1), "F")
    results.record(db, actor=ANALYSER, measurement=measure(number, "KREA", "80"), rules=rules())
    krea = by_code(db, number)["KREA"]
    results.correct(
        db,
        actor=LEGE,
        result_id=krea.id,
        value="160",
        reason="wrong tube",
        rules=rules(),  # type: ignore[attr-defined]
    )
    egfr = by_code(db, number)["EGFR"]
    assert egfr.status == "corrected" and egfr.value_numeric < Decimal("73")  # type: ignore[attr-defined]
    assert egfr.versions[-1].reason == "recalculated: KREA corrected"  # type: ignore[attr-defined]


def test_an_abnormal_tsh_adds_ft4_once_and_a_correction_withdraws_it(db: Session) -> None:
    number = tube(db, ["TSH"], date(1970, 1, 1), "F")
    for _ in range(2):  # sent twice: FT4 is added once
        results.record(db, actor=ANALYSER, measurement=measure(number, "TSH", "9.5"), rules=rules())
    specimen = specimens.get_by_accession(db, number)
    pending = [t.test.code for t in specimens.pending_tests(db, specimen)]
    assert pending == ["FT4"]  # in the worklist and the analyser's host query answer
    added = [t for t in specimens.tests_of(db, specimen) if t.added_by_rule]
    assert len(added) == 1 and added[0].added_by_rule.startswith("reflex TSH-FT4")
    tsh = by_code(db, number)["TSH"]
    assert tsh.status == "verified"  # type: ignore[attr-defined]  # high, but no hold
    results.correct(
        db,
        actor=LEGE,
        result_id=tsh.id,
        value="2.1",
        reason="typed wrong",
        rules=rules(),  # type: ignore[attr-defined]
    )
    db.flush()
    db.refresh(added[0])
    assert added[0].status == "cancelled" and "withdrawn" in added[0].cancel_reason


def test_a_normal_tsh_adds_nothing(db: Session) -> None:
    number = tube(db, ["TSH"], date(1970, 1, 1), "F")
    results.record(db, actor=ANALYSER, measurement=measure(number, "TSH", "2.0"), rules=rules())
    specimen = specimens.get_by_accession(db, number)
    assert [t.test.code for t in specimens.tests_of(db, specimen)] == ["TSH"]
