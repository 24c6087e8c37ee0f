"""Calculated tests outside the recording of a tube: the patient facts a formula reads, which
results a formula may use, and the calculated tests of a tube worked out afresh after one of
their inputs was corrected. `lab.results.recording` calculates them when their inputs are
recorded; `lab.results.service.correct` recalculates them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.catalog.rules import TestRule, snapshot
from lab.patients import service as patients
from lab.results.judging import ActiveRules, PatientFacts
from lab.results.state import ResultState
from lab.rules import Calculation, HoldCode, calculate
from lab.rules import Patient as FormulaPatient
from lab.specimens import service as specimens
from lab.tables import OrderedTest, Patient, Result, Specimen
from lab.tables.results import R
from lab.timeutil import OSLO, utcnow

# The hold of a calculated result while an input waits for a person (CLSI AUTO15 step 10: a
# group is released together); verifying the input verifies it too.
WAITS_FOR = "released together with"
CALCULATOR = "calculated"  # the `instrument` of a calculated result


def patient_facts(patient: Patient, specimen: Specimen) -> PatientFacts:
    """Sex, and age on the (Oslo) day the specimen was collected, or today when not known."""
    on = (specimen.collected_at or utcnow()).astimezone(OSLO).date()
    born = patient.birth_date
    years = (
        None
        if born is None
        else on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    )
    return PatientFacts(
        sex=patient.sex, age_days=patients.age_in_days(patient, on), age_years=years
    )


def usable(state: ResultState) -> bool:
    """An input a formula may use: a plain number, not implausible, not withdrawn."""
    return (
        state.value_numeric is not None
        and state.comparator is None
        and state.status != R.CANCELLED
        and not (state.judgement or {}).get("implausible")
        and not any(hold.code is HoldCode.PLAUSIBILITY for hold in state.holds)
    )


def recalculated(
    session: Session, *, result: Result, rules: ActiveRules
) -> list[tuple[TestRule, Calculation]]:
    """The calculated tests of the tube that read `result`'s test, calculated afresh from the
    tube's current results (after a correction)."""
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
    values = {
        catalog_now.by_id[r.test_id].code: state.value_numeric
        for r in stored
        if usable(state := ResultState.of(r)) and state.value_numeric is not None
    }
    found: list[tuple[TestRule, Calculation]] = []
    for formula in rules.formulas.using(code):
        test = catalog_now.by_code.get(formula.test_code)
        if test is None:
            continue
        found.append(
            (
                test,
                calculate(
                    formula,
                    results=values,
                    patient=FormulaPatient(
                        age_years=facts.age_years, age_days=facts.age_days, sex=facts.sex
                    ),
                ),
            )
        )
    return found
