"""The rule set chooses the measurement to report (`report_measurement`) when a test's
measurements differ: the newest, or the one within the measuring range (a dilution of a sample
above it); otherwise a person chooses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

from sqlalchemy.orm import Session

from lab.results import service as results
from lab.results.judging import ActiveRules
from lab.results.queries import stored
from lab.rules.choice import MeasurementChoice
from tests.results.test_autoverification import ADULT, ANALYSER, AT, measure, patient, tube
from tests.rules.helpers import demo_ruleset


def _rules(code: str, choice: MeasurementChoice) -> ActiveRules:
    ruleset = demo_ruleset()
    tests = {**ruleset.tests, code: replace(ruleset.tests[code], report_measurement=choice)}
    return ActiveRules(autoverification=replace(ruleset, tests=MappingProxyType(tests)))


def _keys(result: object) -> list[str]:
    return [hold.get("key", "") for hold in result.holds]  # type: ignore[attr-defined]


def test_the_diluted_measurement_is_reported_when_the_first_was_above_the_range(
    db: Session,
) -> None:
    rules = _rules("CRP", MeasurementChoice.IN_RANGE)
    number = tube(db, patient(ADULT, "M"), ["CRP"])
    results.record(db, actor=ANALYSER, measurement=measure(number, "CRP", ">300"), rules=rules)
    later = AT + timedelta(minutes=20)
    diluted = measure(number, "CRP", "420", at=later, dilution="2")
    outcome = results.record(db, actor=ANALYSER, measurement=diluted, rules=rules)
    result = stored(db, outcome)
    assert result.value_numeric == 420 and result.comparator is None
    assert result.versions[-1].measurement_id == result.measurements[1].id
    assert "choose" not in _keys(result)


def test_an_earlier_measurement_within_the_range_stays_reported(db: Session) -> None:
    rules = _rules("CRP", MeasurementChoice.IN_RANGE)
    number = tube(db, patient(ADULT, "M"), ["CRP"])
    results.record(db, actor=ANALYSER, measurement=measure(number, "CRP", "420"), rules=rules)
    later = measure(number, "CRP", ">300", at=AT + timedelta(minutes=20))
    outcome = results.record(db, actor=ANALYSER, measurement=later, rules=rules)
    result = stored(db, outcome)
    first = result.measurements[0]
    assert len(result.measurements) == 2
    assert result.value_numeric == 420 and result.comparator is None
    last = result.versions[-1] if result.status != "verified" else result.versions[-2]
    assert last.measurement_id == first.id
    assert last.reason == "measurement 1 (first) chosen"
    assert last.author.startswith("autoverification v")
    assert "choose" not in _keys(result)


def test_the_latest_is_reported_and_released_when_nothing_else_holds(db: Session) -> None:
    rules = _rules("NA", MeasurementChoice.LATEST)
    number = tube(db, patient(ADULT, "F"), ["NA"])
    first = results.record(
        db, actor=ANALYSER, measurement=measure(number, "NA", "140"), rules=rules
    )
    assert first.status == "verified"  # released at once: a later one is a further measurement
    other = tube(db, patient(ADULT, "F"), ["NA"])
    results.record(
        db, actor=ANALYSER, measurement=measure(other, "NA", "140", preliminary=True), rules=rules
    )
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(other, "NA", "141"), rules=rules
    )
    result = stored(db, outcome)
    assert result.value_numeric == 141 and result.status == "verified"
    assert result.verified_by is not None and result.verified_by.startswith("autoverification")


def test_by_default_a_person_chooses(db: Session) -> None:
    rules = _rules("NA", MeasurementChoice.PERSON)
    number = tube(db, patient(ADULT, "F"), ["NA"])
    results.record(
        db, actor=ANALYSER, measurement=measure(number, "NA", "140", preliminary=True), rules=rules
    )
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(number, "NA", "141"), rules=rules
    )
    result = stored(db, outcome)
    assert result.status == "awaiting_review" and "choose" in _keys(result)
