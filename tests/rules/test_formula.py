"""The formula engine: golden CKD-EPI 2021 values, refusals with positions, and safety."""

from __future__ import annotations

import builtins
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.rules import FormulaInput, Patient, RuleSetError, calculate, parse_formulas
from lab.rules.demo import demo_texts
from lab.rules.formula import FormulaSyntaxError, check_formula, parse_expression
from tests.rules.helpers import demo_catalog, demo_ruleset


def _inputs() -> dict[str, FormulaInput]:
    ruleset = demo_ruleset()
    inputs = {}
    for code, facts in demo_catalog().items():
        rules = ruleset.for_test(code)
        low = rules.plausible_low if rules else None
        high = rules.plausible_high if rules else None
        inputs[code] = FormulaInput(
            unit=facts.unit,
            low=float(low) if low is not None else None,
            high=float(high) if high is not None else None,
        )
    return inputs


@pytest.fixture(scope="module")
def egfr():  # type: ignore[no-untyped-def]
    return parse_formulas(demo_texts()["formulas"], version=1, known_tests=_inputs()).formulas[
        "EGFR"
    ]


def _egfr(formula, umol: str, age: int, sex: str):  # type: ignore[no-untyped-def]
    return calculate(
        formula,
        results={"KREA": Decimal(umol)},
        patient=Patient(age_years=age, age_days=age * 365, sex=sex),
    )


def _reference(scr_mg_dl: float, age: int, sex: str) -> float:
    """CKD-EPI 2021 written out directly from Inker et al. 2021, for comparison."""
    kappa, alpha = (0.7, -0.241) if sex == "F" else (0.9, -0.302)
    value = (
        142 * min(scr_mg_dl / kappa, 1) ** alpha * max(scr_mg_dl / kappa, 1) ** -1.200 * 0.9938**age
    )
    return value * 1.012 if sex == "F" else value


def test_golden_values(egfr) -> None:  # type: ignore[no-untyped-def]
    man = _egfr(egfr, str(Decimal("1.2") * Decimal("88.4")), 55, "M")
    assert round(man.value, 1) == 71.4 and man.reported == "71"
    woman = _egfr(egfr, "80", 60, "F")
    assert round(woman.value, 1) == 72.7 and woman.reported == "73"


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("age", [18, 90])
@pytest.mark.parametrize("scr_mg_dl", [0.5, 0.7, 0.9, 1.5, 4.0])  # both sides of kappa
def test_both_sexes_ages_and_sides_of_kappa(egfr, sex: str, age: int, scr_mg_dl: float) -> None:  # type: ignore[no-untyped-def]
    umol = Decimal(str(scr_mg_dl)) * Decimal("88.4")
    result = _egfr(egfr, str(umol), age, sex)
    assert result.value == pytest.approx(_reference(scr_mg_dl, age, sex), rel=1e-12)
    if result.value > 90:
        assert result.reported == ">90" and result.comparator == ">"
    else:
        assert result.reported == str(
            Decimal(result.value).quantize(Decimal(1), rounding="ROUND_HALF_UP")
        )


def test_never_under_18_or_with_unknown_sex(egfr) -> None:  # type: ignore[no-untyped-def]
    child = _egfr(egfr, "60", 17, "F")
    assert not child.calculated and "under 18" in child.reason
    unknown = _egfr(egfr, "60", 40, "U")
    assert not unknown.calculated and "sex" in unknown.reason
    no_age = calculate(
        egfr, results={"KREA": Decimal(60)}, patient=Patient(age_years=None, age_days=None, sex="F")
    )
    assert not no_age.calculated and "age" in no_age.reason
    missing = calculate(egfr, results={}, patient=Patient(age_years=40, age_days=None, sex="F"))
    assert not missing.calculated and "KREA" in missing.reason


def _refuse(text: str, unit: str | None = "mmol/L") -> FormulaSyntaxError:
    with pytest.raises(FormulaSyntaxError) as caught:
        check_formula(test_code="X", text=text, unit=unit, inputs=_inputs())
    return caught.value


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("NA + KREA", 1, "unit mismatch in +: mmol/L and umol/L"),
        ("NA + ", 5, "unexpected end"),
        ("NA + NOPE", 6, "unknown test or name 'NOPE'"),
        ("NA / (NA - NA)", 1, "division by a value that can be zero"),
        ("NA / LPK * 1 [10*9/L]", 1, "division by a value that can be zero"),
        ("NA * ln(CRP / 1 [mg/L])", 6, "ln of a value that can be zero or negative"),
        ("ln(NA)", 1, "ln takes a plain number"),
        ("NA ^ 0.5 * 1 [mmol/L]", 1, "raised to a whole number"),
        ("frobnicate(NA)", 1, "unknown function"),
        ('__import__("os")', 1, "unknown function"),
        ("if(NA, NA, NA)", 4, "first argument of if is a condition"),
        ("NA > 1 [mmol/L]", 1, "must give a number"),
    ],
)
def test_refused_with_position_and_reason(text: str, column: int, reason: str) -> None:
    error = _refuse(text)
    assert reason in error.reason
    assert error.where.column == column


def test_result_unit_must_be_the_tests_unit() -> None:
    error = _refuse("KREA", unit="mmol/L")
    assert "gives umol/L, but X is reported in mmol/L" in error.reason


def test_a_formula_set_with_an_error_is_refused_with_the_line() -> None:
    text = '[formula.EGFR]\ndecimals = 0\nexpression = "KREA + NA"\n'
    with pytest.raises(RuleSetError) as caught:
        parse_formulas(text, version=2, known_tests=_inputs())
    problem = caught.value.problems[0]
    assert problem.field == "line 3" and "unit mismatch" in problem.message


def test_dividing_by_a_test_with_a_positive_plausibility_limit_is_allowed() -> None:
    formula = check_formula(
        test_code="X", text="NA / KREA * 1 [umol/L]", unit="mmol/L", inputs=_inputs()
    )
    result = calculate(
        formula,
        results={"NA": Decimal(140), "KREA": Decimal(70)},
        patient=Patient(age_years=40, age_days=None, sex="F"),
    )
    assert result.value == pytest.approx(2.0)


# ---------------------------------------------------------------------- safety


_PIECES = st.sampled_from(
    [
        "NA",
        "KREA",
        "age",
        "sex",
        '"F"',
        "1",
        "2.5",
        "[mmol/L]",
        "[umol/L]",
        "+",
        "-",
        "*",
        "/",
        "^",
        "(",
        ")",
        ",",
        "min",
        "max",
        "ln",
        "log",
        "exp",
        "abs",
        "if",
        "==",
        "<",
        "and",
        "or",
        "not",
        "__import__",
        "os",
        ".",
        "system",
        "'",
        "lambda",
        ":",
        "[",
        "]",
        "eval",
        "exec",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=20).map(" ".join))
def test_the_engine_never_executes_anything_but_arithmetic(text: str) -> None:
    """Any text is refused or evaluates to a number or a reason; no Python is ever run."""
    forbidden: list[str] = []
    saved: dict[str, Any] = {}
    for name in ("eval", "exec", "compile", "__import__", "open"):
        saved[name] = getattr(builtins, name)

        def trap(*args: Any, _name: str = name, **kwargs: Any) -> Any:
            forbidden.append(_name)
            return saved[_name](*args, **kwargs)

        setattr(builtins, name, trap)
    try:
        try:
            formula = check_formula(test_code="X", text=text, unit=None, inputs=_inputs())
        except FormulaSyntaxError:
            return
        result = calculate(
            formula,
            results={"NA": Decimal(140), "KREA": Decimal(80)},
            patient=Patient(age_years=50, age_days=50 * 365, sex="F"),
        )
        assert result.calculated or result.reason
        if result.calculated:
            assert isinstance(result.value, float)
    finally:
        for name, original in saved.items():
            setattr(builtins, name, original)
    assert forbidden == []


@given(st.text(max_size=120))
def test_any_text_is_a_tree_or_a_positioned_refusal(text: str) -> None:
    try:
        parse_expression(text)
    except FormulaSyntaxError as error:
        assert error.where.line >= 1 and error.where.column >= 1


def test_the_engine_source_has_no_eval_exec_or_compile() -> None:
    import inspect

    import lab.rules.formula as module

    source = inspect.getsource(module)
    for word in ("eval(", "exec(", "compile("):
        assert word not in source.replace("_evaluate(", "")
