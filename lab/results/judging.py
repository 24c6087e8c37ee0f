"""The pure step of the result path: from what was loaded and what arrived to the state to write.

No session and no clock here: `service` loads the tube, calls these functions, and hands what
they decide to `writing`. A measurement that cannot be stored is answered with a `Refusal`
(a value, not an exception), so one refused result never costs the others of its tube.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from dataclasses import field as dataclass_field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog import units
from lab.catalog.rules import TestRule
from lab.errors import Conflict, FieldProblem, InvalidInput, LabError, NotFound
from lab.results import flags as result_flags
from lab.results.state import Change, NewMeasurement, ResultState
from lab.rules import (
    Hold,
    HoldCode,
    Interval,
    JudgementContext,
    PreviousResult,
    ResultToJudge,
    RuleSet,
    SerumIndices,
    TestFacts,
    check_value,
    judge,
)
from lab.rules.choice import Measured, MeasurementChoice, chosen
from lab.rulesets import service as rulesets
from lab.rulesets.service import ActiveRules as ActiveRules
from lab.tables.results import MeasurementOrigin, R, StoredMeasurement
from lab.timeutil import as_utc


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """A result as it arrives, before the rules have looked at it."""

    accession_number: str
    test_code: str
    value: str
    unit: str | None = None
    observed_at: datetime | None = None
    preliminary: bool = False
    instrument: str = ""
    operator: str = ""
    instrument_flags: str = ""
    comment: str = ""
    # The analyser's rerun or dilution qualifier (cobas `685/5` -> "5"); "" for a first run.
    dilution: str = ""
    # As the analyser sent them, when a unit conversion changed `value` and `unit`.
    original_value: str = ""
    original_unit: str = ""
    # The analyser profile whose flag mapping applies to `instrument_flags` ("" = keyboard).
    flag_profile: str = ""
    indices: SerumIndices | None = (
        None  # haemolysis, icterus, lipaemia, when the analyser sends them
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a measurement or a change cannot be stored, and which field it concerns."""

    field: str
    message: str
    kind: Literal["invalid", "not_found", "conflict"] = "invalid"
    # The problem's name and values, for the pages to say it in the reader's language.
    code: str | None = None
    params: Mapping[str, object] = dataclass_field(default_factory=dict)

    def error(self) -> LabError:
        # Each kind names its field too, so a form shows the refusal next to it.
        problems = [FieldProblem(self.field, self.message, self.code, self.params)]
        if self.kind == "not_found":
            return NotFound(self.message, code=self.code, params=self.params, problems=problems)
        if self.kind == "conflict":
            return Conflict(self.message, code=self.code, params=self.params, problems=problems)
        return InvalidInput.field(self.field, self.message, code=self.code, params=self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientFacts:
    """What the rules need of the patient: sex, and age on the day of collection (in days, and
    in whole years as formulas take it)."""

    sex: str
    age_days: int | None
    age_years: int | None = None


def parse_value(test: TestRule, text: str) -> result_flags.NumericValue | str | Refusal:
    if not text.strip():
        return Refusal(field="value", message="the value is empty", code="value_empty")
    if test.result_type == "numeric":
        # The one check of every entry point (analyser, keyboard, API): not a number, NaN,
        # infinity, out of any sane range, or a negative concentration is refused with why.
        checked = check_value(text)
        if not checked.ok or checked.value is None:
            return Refusal(
                field="value",
                message=f"{test.code} takes a number: {checked.reason}",
                code="value_not_number",
                # `why`: the value check's code (negative, not_finite, ...), said by the pages.
                params={"code": test.code, "value": text.strip(), "why": checked.code},
            )
        return result_flags.NumericValue(value=checked.value, comparator=checked.comparator)
    if (
        test.result_type == "coded"
        and test.allowed_codes
        and text.strip() not in test.allowed_codes
    ):
        return Refusal(
            field="value",
            message=f"{test.code} takes one of {', '.join(test.allowed_codes)}",
            code="value_not_allowed",
            params={"code": test.code, "allowed": ", ".join(test.allowed_codes)},
        )
    return text.strip()


def value_of(measurement: StoredMeasurement) -> result_flags.NumericValue | str:
    """A stored measurement's value as the rules take it."""
    if measurement.value_numeric is not None:
        return result_flags.NumericValue(
            value=measurement.value_numeric, comparator=measurement.comparator
        )
    return measurement.value_text or ""


def with_value(
    state: ResultState,
    test: TestRule,
    patient: PatientFacts,
    value: result_flags.NumericValue | str,
) -> ResultState:
    """The state with this value, flagged against the interval and limits that apply."""
    if not isinstance(value, result_flags.NumericValue):
        return state.but(
            value_numeric=None,
            comparator=None,
            value_text=value,
            flags=(),
            reference_low=None,
            reference_high=None,
        )
    interval = catalog.reference_range(test, sex=patient.sex, age_days=patient.age_days)
    low = interval.low if interval else None
    high = interval.high if interval else None
    flags = result_flags.compute(
        value, low=low, high=high, critical_low=test.critical_low, critical_high=test.critical_high
    )
    return state.but(
        value_numeric=value.value,
        comparator=value.comparator,
        value_text=None,
        flags=tuple(flags),
        reference_low=low,
        reference_high=high,
    )


def in_test_unit(test: TestRule, measurement: Measurement) -> Measurement:
    """A numeric value in a unit convertible to the catalog's (`mmol/L` for `umol/L`, `10*3/uL`
    for `10*9/L`), converted as the analyser path converts it (lab.catalog.units), with the value
    and unit as given kept as the original; anything else as it is (`measured_state` refuses a
    unit it cannot take)."""
    given = (measurement.unit or "").strip()
    if test.result_type != "numeric" or not given or not test.unit or given == test.unit:
        return measurement
    reading = units.in_catalog_unit(
        measurement.value, given, catalog_unit=test.unit, catalog_ucum=test.ucum
    )
    if isinstance(reading, units.NotConvertible) or not reading.original_unit:
        return measurement
    return replace(
        measurement,
        value=reading.value,
        unit=test.unit,
        original_value=reading.original_value,
        original_unit=reading.original_unit,
    )


def measured_state(
    test: TestRule, measurement: Measurement, patient: PatientFacts
) -> ResultState | Refusal:
    """The state a measurement gives its result, or why it cannot be stored."""
    value = parse_value(test, measurement.value)
    if isinstance(value, Refusal):
        return value
    unit = measurement.unit.strip() if measurement.unit else test.unit
    # The same unit written otherwise (umol/l, µmol/L) is the catalog's (lab.catalog.units).
    if unit and test.unit and unit != test.unit and units.same_unit(unit, test.ucum or test.unit):
        unit = test.unit
    if test.result_type == "numeric" and unit != test.unit:
        return Refusal(
            field="unit",
            message=f"{test.code} is reported in {test.unit}; {unit} cannot be converted to it",
            code="unit_mismatch",
            params={"code": test.code, "unit": test.unit, "given": unit},
        )
    state = ResultState(
        status=R.PRELIMINARY if measurement.preliminary else R.AWAITING_REVIEW,
        unit=unit,
        instrument_flags=measurement.instrument_flags,
        instrument=measurement.instrument,
        operator=measurement.operator,
        observed_at=as_utc(measurement.observed_at) if measurement.observed_at else None,
        comment=measurement.comment,
    )
    return with_value(state, test, patient, value)


def new_measurement(
    state: ResultState,
    measurement: Measurement,
    *,
    specimen_id: int,
    earlier: Sequence[NewMeasurement | StoredMeasurement],
) -> NewMeasurement:
    """The measurement as it is kept, with its origin among the test's earlier measurements."""
    if measurement.dilution.strip():
        origin = MeasurementOrigin.DILUTION
    elif not earlier:
        origin = MeasurementOrigin.FIRST
    elif all(_analyser(m.instrument) == _analyser(measurement.instrument) for m in earlier):
        origin = MeasurementOrigin.RERUN
    else:
        origin = MeasurementOrigin.REPEAT
    return NewMeasurement(
        specimen_id=specimen_id,
        origin=origin,
        preliminary=state.status == R.PRELIMINARY,
        value_numeric=state.value_numeric,
        value_text=state.value_text,
        comparator=state.comparator,
        unit=state.unit,
        original_value=measurement.original_value,
        original_unit=measurement.original_unit,
        dilution=measurement.dilution.strip(),
        instrument=state.instrument,
        operator=state.operator,
        instrument_flags=state.instrument_flags,
        comment=state.comment,
        observed_at=state.observed_at,
    )


def _analyser(instrument: str) -> str:
    """`cobas-1/P1` and `cobas-1/ISE1` are modules of one analyser."""
    return instrument.split("/", 1)[0]


NO_RULES = ActiveRules()  # nothing is released without a person


def active_rules(session: Session) -> ActiveRules:
    """The rule documents in force in this transaction (`lab.rulesets`: the active version of
    each kind, and the autoverification version in shadow if one runs). None active: nothing
    is released without a person."""
    return rulesets.active_rules(session)


@dataclass(frozen=True, slots=True, kw_only=True)
class TubeFacts:
    """What the judgement needs of the tube beyond the result itself, read once per tube."""

    patient: PatientFacts
    previous: Mapping[int, PreviousResult]  # by test id: measured before, not cancelled
    qc_locked: frozenset[str] = frozenset()  # test codes QC has locked on this analyser
    specimen_results: Mapping[str, Decimal] = field(default_factory=dict)


def judged(
    state: ResultState,
    test: TestRule,
    facts: TubeFacts,
    ruleset: RuleSet | None,
    *,
    flag_profile: str = "",
    indices: SerumIndices | None = None,
    measured_at: datetime,
) -> tuple[ResultState, bool]:
    """The state with its flag, holds and the rule set version; and whether it may be released
    without a person (never a preliminary result, never with a hold)."""
    if ruleset is None:
        return _judged_without_rules(state, test, facts), False
    subject = ResultToJudge(
        test_code=test.code,
        value=state.value_numeric,
        comparator=state.comparator,
        text=state.value_text or "",
        unit=state.unit,
        measured_at=state.observed_at or measured_at,
        instrument=_analyser(state.instrument),
        flag_profile=flag_profile,
        instrument_flags=tuple(state.instrument_flags.replace(",", " ").split()),
        indices=indices,
    )
    context = JudgementContext(
        test=test_facts(test),
        age_days=facts.patient.age_days,
        sex=facts.patient.sex,
        previous=facts.previous.get(test.id),
        qc_locked=test.code in facts.qc_locked,
        specimen_results=facts.specimen_results,
    )
    judgement = judge(subject, context, ruleset)
    rules = ruleset.for_test(test.code)
    enabled = rules is not None and rules.autoverify
    holds = tuple(
        hold
        for hold in judgement.holds
        # The test not being enabled for autoverification is why no machine releases it, not a
        # reason for a person to look closer: it is kept in `judgement`, not among the holds.
        if enabled or hold.key != "not_enabled"
    )
    shown: dict[str, Any] = {
        "implausible": judgement.implausible,
        "critical": judgement.critical,
        "rerun": judgement.rerun,
        "autoverify": judgement.autoverify and enabled,
    }
    if not enabled:
        shown["not_autoverified"] = f"{test.code} is not enabled for autoverification"
    if judgement.delta is not None:
        delta = judgement.delta
        shown["delta"] = {
            "previous": str(delta.previous),
            "previous_at": delta.previous_at.isoformat(),
            "change": str(delta.change),
            "relative_change": delta.relative_change,
            "limit": delta.limit_text,
            # The same limit in parts, for the pages to say in the reader's language.
            "allowed": delta.limit,
            "window": delta.window,
            "window_unit": delta.window_unit,
            "beyond_limit": delta.beyond_limit,
        }
    if judgement.comments:
        shown["comments"] = [{"code": c.code, "text": c.text} for c in judgement.comments]
    new = state.but(
        flags=(judgement.flag,) if judgement.flag else (),
        reference_low=judgement.reference_low,
        reference_high=judgement.reference_high,
        holds=holds,
        ruleset_version=judgement.ruleset_version,
        judgement=shown,
    )
    release = judgement.autoverify and enabled and not holds and state.status == R.AWAITING_REVIEW
    return new, release


def _judged_without_rules(state: ResultState, test: TestRule, facts: TubeFacts) -> ResultState:
    """No active rule set: the flag from the catalog, and the holds the contract asks of every
    result (no interval applies; beyond a critical limit)."""
    holds: list[Hold] = []
    if (
        state.value_numeric is not None
        and state.reference_low is None
        and state.reference_high is None
    ):
        holds.append(
            Hold(
                code=HoldCode.NO_REFERENCE_INTERVAL,
                text="no reference interval applies to this patient",
                key="no_interval",
            )
        )
    if any(flag in ("LL", "HH") for flag in state.flags):
        holds.append(Hold(code=HoldCode.CRITICAL, text="beyond the critical limit", key="critical"))
    if test.code in facts.qc_locked:
        analyser = _analyser(state.instrument) or "its analyser"
        holds.append(
            Hold(
                code=HoldCode.QC,
                text=f"{test.code} is locked by QC on {analyser}",
                key="qc_locked",
                params={"test": test.code, "analyser": _analyser(state.instrument), "rule": ""},
            )
        )
    return state.but(holds=tuple(holds), ruleset_version=None, judgement=None)


@cache
def test_facts(test: TestRule) -> TestFacts:
    """The catalog's test as the judgement layer takes it (TestRule is frozen: cached)."""
    return TestFacts(
        code=test.code,
        unit=test.unit,
        reference_intervals=tuple(
            Interval(
                sex=ri.sex,
                age_min_days=ri.age_min_days,
                age_max_days=ri.age_max_days,
                low=ri.low,
                high=ri.high,
            )
            for ri in test.reference_intervals
        ),
        critical_low=test.critical_low,
        critical_high=test.critical_high,
    )


def rules_report(
    ruleset: RuleSet | None,
    test_code: str,
    measured: Sequence[NewMeasurement | StoredMeasurement],
) -> NewMeasurement | StoredMeasurement | None:
    """The measurement the rule set reports of several that differ (`report_measurement`);
    None when a person chooses (the rule set says so, or it picked an earlier measurement of
    the same message, which has no stored row to name yet)."""
    rules = ruleset.for_test(test_code) if ruleset is not None else None
    policy = rules.report_measurement if rules is not None else MeasurementChoice.PERSON
    pick = chosen(
        policy,
        [
            Measured(value=m.value_numeric, comparator=m.comparator, text=m.value_text)
            for m in measured
        ],
    )
    if pick is None:
        return None
    found = measured[pick]
    if pick != len(measured) - 1 and not isinstance(found, StoredMeasurement):
        return None
    return found


def chosen_by_rules(
    state: ResultState,
    measurement: StoredMeasurement,
    test: TestRule,
    facts: TubeFacts,
    ruleset: RuleSet | None,
    *,
    by: Actor,
    seen: tuple[Measurement, datetime],
) -> tuple[Change, bool]:
    """The version in which the rule set reports an earlier measurement (judged again), and
    whether it may then be released without a person. `seen`: the new measurement (its
    analyser's flag profile) and when it was recorded."""
    base = state.but(
        status=R.PRELIMINARY if measurement.preliminary else R.AWAITING_REVIEW,
        unit=measurement.unit,
        instrument_flags=measurement.instrument_flags,
        instrument=measurement.instrument,
        operator=measurement.operator,
        observed_at=measurement.observed_at,
        comment=measurement.comment,
        measurement_id=measurement.id,
    )
    base = with_value(base, test, facts.patient, value_of(measurement))
    new, release = judged(
        base, test, facts, ruleset, flag_profile=seen[0].flag_profile, measured_at=seen[1]
    )
    why = f"measurement {measurement.number} ({measurement.origin}) chosen"
    change = Change(
        state=new,
        action="result.choose",
        author=by.username,
        reason=why,
        detail=f"{why} by rule set v{new.ruleset_version} (report_measurement)",
        by=by,
    )
    return change, release
