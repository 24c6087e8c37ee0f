"""Calculated tests outside the recording of a tube: the patient facts a formula reads, which
results a formula may use, and the calculated tests of a tube worked out afresh after one of
their inputs was corrected. `lab.results.recording` calculates them when their inputs are
recorded; `lab.results.service.correct` recalculates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.catalog.rules import TestRule, snapshot
from lab.results.judging import ActiveRules, PatientFacts
from lab.results.state import ResultState
from lab.rules import Calculation, HoldCode, calculate
from lab.rules import Patient as FormulaPatient
from lab.specimens import service as specimens
from lab.tables import OrderedTest, Patient, Result, Specimen
from lab.tables.results import RELEASED, R
from lab.timeutil import OSLO, utcnow

# The hold of a calculated result while an input waits for a person (CLSI AUTO15 step 10: a
# group is released together); verifying the input verifies it too.
WAITS_FOR = "released together with"
CALCULATOR = "calculated"  # the `instrument` of a calculated result


def patient_facts(patient: Patient, specimen: Specimen) -> PatientFacts:
    """Sex, and age on the (Oslo) day the specimen was collected, or today when not known."""
    return facts_of(
        sex=patient.sex, birth_date=patient.birth_date, collected_at=specimen.collected_at
    )


def facts_of(*, sex: str, birth_date: date | None, collected_at: datetime | None) -> PatientFacts:
    """`patient_facts` from the columns (the tube read as plain rows)."""
    on = (collected_at or utcnow()).astimezone(OSLO).date()
    born = birth_date
    years = (
        None
        if born is None
        else on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    )
    days = None if born is None else (on - born).days  # as `patients.age_in_days`
    return PatientFacts(sex=sex, age_days=days, age_years=years)


def usable(state: ResultState) -> bool:
    """An input a formula may use: a plain number, not implausible, not withdrawn."""
    return (
        state.value_numeric is not None
        and state.comparator is None
        and state.status != R.CANCELLED
        and not (state.judgement or {}).get("implausible")
        and not any(hold.code is HoldCode.PLAUSIBILITY for hold in state.holds)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Recalculation:
    """A calculated test of the tube worked out afresh, and its inputs not yet released."""

    test: TestRule
    calculation: Calculation
    waiting: tuple[str, ...]  # input test codes that wait for a person


def recalculated(session: Session, *, result: Result, rules: ActiveRules) -> list[Recalculation]:
    """The calculated tests of the tube that read `result`'s test, calculated afresh from the
    tube's current results (after a correction, or another measurement chosen)."""
    if rules.formulas is None:
        return []
    catalog_now = snapshot(session)
    code = catalog_now.by_id[result.test_id].code
    specimen = session.get(Specimen, result.specimen_id)
    patient = session.get(Patient, result.patient_id)
    assert specimen is not None and patient is not None  # foreign keys
    root = specimens.root_of(session, specimen)
    facts = patient_facts(patient, root)
    tests = {
        t.id: t
        for t in session.scalars(select(OrderedTest).where(OrderedTest.specimen_id == root.id))
    }
    stored = session.scalars(select(Result).where(Result.ordered_test_id.in_(list(tests)))).all()
    states = {catalog_now.by_id[r.test_id].code: ResultState.of(r) for r in stored}
    values = {
        code: state.value_numeric
        for code, state in states.items()
        if usable(state) and state.value_numeric is not None
    }
    found: list[Recalculation] = []
    for formula in rules.formulas.using(code):
        test = catalog_now.by_code.get(formula.test_code)
        if test is None:
            continue
        calculation = calculate(
            formula,
            results=values,
            patient=FormulaPatient(
                age_years=facts.age_years, age_days=facts.age_days, sex=facts.sex
            ),
        )
        waiting = tuple(
            sorted(c for c in formula.inputs if c in states and states[c].status not in RELEASED)
        )
        found.append(Recalculation(test=test, calculation=calculation, waiting=waiting))
    return found


def waiting_inputs(session: Session, result: Result) -> list[str]:
    """The inputs a calculated result waits for (named in its hold) that are not released yet:
    while there are any, it is not verified on its own (CLSI AUTO15 step 10)."""
    names = {
        name.strip()
        for hold in ResultState.of(result).holds
        if hold.key == "waits_for"
        for name in hold.params.get("tests", "").split(",")
    }
    if not names:
        return []
    catalog_now = snapshot(session)
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    root = specimens.root_of(session, specimen)
    ordered = select(OrderedTest.id).where(OrderedTest.specimen_id == root.id)
    return sorted(
        catalog_now.by_id[other.test_id].code
        for other in session.scalars(select(Result).where(Result.ordered_test_id.in_(ordered)))
        if catalog_now.by_id[other.test_id].code in names
        and other.id != result.id
        and other.status not in RELEASED
        and other.status != R.CANCELLED
    )
