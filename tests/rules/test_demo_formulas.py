"""The demo formulas beside eGFR: albumin-corrected calcium, non-HDL cholesterol and Friedewald
LDL. Golden values worked out by hand from the published definitions; properties that follow
from their form (linear, monotone); and the same in the recording transaction."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from lab.results import service as results
from lab.results.queries import stored
from lab.rules import Calculation, calculate
from lab.rules import Patient as FormulaPatient
from lab.specimens import service as specimens
from tests.results.test_derived import ANALYSER, by_code, formulas, measure, rules, tube

ADULT = FormulaPatient(age_years=60, age_days=60 * 365, sex="F")


def calc(code: str, patient: FormulaPatient = ADULT, **values: str) -> Calculation:
    formula = formulas().formulas[code]
    return calculate(formula, results={k: Decimal(v) for k, v in values.items()}, patient=patient)


# --- golden values -------------------------------------------------------------------------


def test_corrected_calcium_golden_values() -> None:
    # Ca + 0.020 x (41.3 - albumin). Fürst's own example: 1.85 + 0.020 x (41.3 - 24)
    # = 1.85 + 0.346 = 2.196 -> 2.20 mmol/L.
    assert calc("CAKORR", CA="1.85", ALB="24").reported == "2.20"
    # 2.40 + 0.020 x (41.3 - 45) = 2.40 - 0.074 = 2.326 -> 2.33 (albumin above 41.3 lowers it).
    assert calc("CAKORR", CA="2.40", ALB="45").reported == "2.33"
    # At albumin 41.3 g/L the correction is nil: 2.30 stays 2.30.
    assert calc("CAKORR", CA="2.30", ALB="41.3").reported == "2.30"


def test_corrected_calcium_is_not_calculated_under_13_and_says_why() -> None:
    child = FormulaPatient(age_years=12, age_days=12 * 365, sex="M")
    found = calc("CAKORR", child, CA="2.30", ALB="40")
    assert not found.calculated and "under 13" in found.reason
    teenager = FormulaPatient(age_years=13, age_days=13 * 365 + 10, sex="M")
    assert calc("CAKORR", teenager, CA="2.30", ALB="40").reported == "2.33"  # 2.30 + 0.026


def test_non_hdl_golden_values() -> None:
    assert calc("NHDL", KOL="5.2", HDL="1.3").reported == "3.9"  # 5.2 - 1.3
    assert calc("NHDL", KOL="7.85", HDL="1.10").reported == "6.8"  # 6.75 -> 6.8 (half up)
    found = calc("NHDL", KOL="1.0", HDL="1.2")  # HDL above total: an error somewhere
    assert not found.calculated and "HDL" in found.reason


def test_friedewald_golden_values() -> None:
    # 5.2 - 1.3 - 1.5/2.2 = 5.2 - 1.3 - 0.682 = 3.218 -> 3.2 mmol/L
    assert calc("LDLF", KOL="5.2", HDL="1.3", TG="1.5").reported == "3.2"
    # 6.0 - 1.0 - 4.4/2.2 = 6.0 - 1.0 - 2.0 = 3.0: the last triglyceride value it is used for
    assert calc("LDLF", KOL="6.0", HDL="1.0", TG="4.4").reported == "3.0"
    # 4.5 mmol/L and above: not calculated, with the reason (Friedewald 1972: TG < 400 mg/dL)
    found = calc("LDLF", KOL="6.0", HDL="1.0", TG="4.5")
    assert not found.calculated and "4.5 mmol/L or higher" in found.reason
    # 3.0 - 2.5 - 4.0/2.2 = -1.3: no negative LDL is reported
    found = calc("LDLF", KOL="3.0", HDL="2.5", TG="4.0")
    assert not found.calculated and "not above zero" in found.reason


def test_a_missing_input_gives_no_value_and_names_it() -> None:
    found = calc("LDLF", KOL="5.2", HDL="1.3")
    assert not found.calculated and "TG" in found.reason


# --- properties ----------------------------------------------------------------------------

CONCENTRATION = st.decimals(min_value="0.10", max_value="20.00", places=2)
ALBUMIN = st.decimals(min_value="10", max_value="60", places=1)
CALCIUM = st.decimals(min_value="1.00", max_value="4.00", places=2)


@settings(max_examples=200, deadline=None)
@given(CONCENTRATION, CONCENTRATION, CONCENTRATION, CONCENTRATION)
def test_non_hdl_is_linear(k1: Decimal, h1: Decimal, k2: Decimal, h2: Decimal) -> None:
    """f(a) + f(b) = f(a + b): the difference of two results and nothing else."""
    if not (k1 > h1 and k2 > h2):
        return
    one = calc("NHDL", KOL=str(k1), HDL=str(h1)).value
    two = calc("NHDL", KOL=str(k2), HDL=str(h2)).value
    both = calc("NHDL", KOL=str(k1 + k2), HDL=str(h1 + h2)).value
    assert one is not None and two is not None and both is not None
    assert abs(one + two - both) < 1e-9


@settings(max_examples=200, deadline=None)
@given(CALCIUM, ALBUMIN, st.decimals(min_value="0.01", max_value="1.00", places=2))
def test_corrected_calcium_rises_with_calcium_and_falls_with_albumin(
    ca: Decimal, alb: Decimal, step: Decimal
) -> None:
    base = calc("CAKORR", CA=str(ca), ALB=str(alb)).value
    more_calcium = calc("CAKORR", CA=str(ca + step), ALB=str(alb)).value
    more_albumin = calc("CAKORR", CA=str(ca), ALB=str(alb + step)).value
    assert base is not None and more_calcium is not None and more_albumin is not None
    assert abs(more_calcium - base - float(step)) < 1e-9  # slope 1 in calcium
    assert abs(base - more_albumin - 0.020 * float(step)) < 1e-9  # slope -0.020 in albumin


@settings(max_examples=200, deadline=None)
@given(CONCENTRATION, CONCENTRATION, st.decimals(min_value="0.10", max_value="30.00", places=2))
def test_friedewald_is_never_given_for_triglycerides_of_4_5_or_more(
    kol: Decimal, hdl: Decimal, tg: Decimal
) -> None:
    found = calc("LDLF", KOL=str(kol), HDL=str(hdl), TG=str(tg))
    if tg >= Decimal("4.5"):
        assert not found.calculated
    elif found.calculated:
        assert found.value is not None and found.value > 0
        expected = float(kol) - float(hdl) - float(tg) / 2.2
        assert abs(found.value - expected) < 1e-9
        non_hdl = calc("NHDL", KOL=str(kol), HDL=str(hdl)).value
        assert non_hdl is not None and found.value <= non_hdl  # LDL is part of non-HDL


# --- in the recording transaction ----------------------------------------------------------


def test_lipids_give_non_hdl_and_ldl_released_with_them(db: Session) -> None:
    number = tube(db, ["KOL", "HDL", "TG"], date(1966, 1, 1), "F")
    results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "KOL", "5.2"),
            measure(number, "HDL", "1.3"),
            measure(number, "TG", "1.5"),
        ],
        rules=rules(),
    )
    found = by_code(db, number)
    assert str(found["NHDL"].value_numeric) == "3.9"  # type: ignore[attr-defined]
    assert str(found["LDLF"].value_numeric) == "3.2"  # type: ignore[attr-defined]
    assert {code: r.status for code, r in found.items()} == dict.fromkeys(  # type: ignore[attr-defined]
        ("KOL", "HDL", "TG", "NHDL", "LDLF"), "verified"
    )


def test_high_triglycerides_give_non_hdl_but_no_ldl_and_say_why(db: Session) -> None:
    number = tube(db, ["KOL", "HDL", "TG"], date(1966, 1, 1), "M")
    outcomes = results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "KOL", "7.5"),
            measure(number, "HDL", "0.9"),
            measure(number, "TG", "6.1"),
        ],
        rules=rules(),
    )
    found = by_code(db, number)
    assert "LDLF" not in found and str(found["NHDL"].value_numeric) == "6.6"  # type: ignore[attr-defined]
    notes = [
        (stored(db, outcome).versions[0].judgement or {}).get("not_calculated", {})
        for outcome in outcomes
    ]
    assert any("4.5 mmol/L or higher" in note.get("LDLF", "") for note in notes)


def test_a_low_calcium_adds_albumin_and_then_gives_corrected_calcium(db: Session) -> None:
    number = tube(db, ["CA"], date(1950, 5, 5), "M")
    results.record(db, actor=ANALYSER, measurement=measure(number, "CA", "2.05"), rules=rules())
    specimen = specimens.get_by_accession(db, number)
    assert [t.test.code for t in specimens.pending_tests(db, specimen)] == ["ALB"]  # reflex
    results.record(db, actor=ANALYSER, measurement=measure(number, "ALB", "30"), rules=rules())
    found = by_code(db, number)
    # 2.05 + 0.020 x (41.3 - 30) = 2.05 + 0.226 = 2.276 -> 2.28 mmol/L
    assert str(found["CAKORR"].value_numeric) == "2.28"  # type: ignore[attr-defined]
