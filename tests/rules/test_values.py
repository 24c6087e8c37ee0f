"""The one entry check of numeric values: refused with a reason, never raised."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.rules import check_value


@pytest.mark.parametrize(
    ("raw", "value", "comparator"),
    [
        ("5.2", Decimal("5.2"), None),
        ("5,2", Decimal("5.2"), None),
        ("<5", Decimal(5), "<"),
        ("> 100", Decimal(100), ">"),
        ("0", Decimal(0), None),
        ("-0", Decimal(0), None),
        ("1e2", Decimal(100), None),
        (Decimal("140"), Decimal(140), None),
        (4.1, Decimal("4.1"), None),
    ],
)
def test_accepted(raw: str | Decimal | float, value: Decimal, comparator: str | None) -> None:
    checked = check_value(raw)
    assert checked.ok, checked.reason
    assert checked.value == value
    assert checked.comparator == comparator


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("NaN", "not a finite number"),
        ("inf", "not a finite number"),
        ("-Infinity", "not a finite number"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        ("1e400", "out of any sane range"),
        ("9" * 401, "out of any sane range"),
        ("1e-400", "smaller than any analyser resolves"),
        ("0.1234567890123456789", "significant digits"),
        ("-5", "negative"),
        ("abc", "not a number"),
        ("5..2", "not a number"),
        ("", "empty"),
        ("<", "empty"),
        (True, "true/false"),
    ],
)
def test_refused_with_reason(raw: str | float | bool, reason: str) -> None:
    checked = check_value(raw)
    assert not checked.ok
    assert checked.value is None
    assert reason in checked.reason


def test_negative_allowed_where_the_quantity_can_be_negative() -> None:
    checked = check_value("-3,5", allow_negative=True)
    assert checked.ok and checked.value == Decimal("-3.5")


@given(st.text(max_size=60))
def test_any_text_gets_an_answer_and_never_an_exception(raw: str) -> None:
    checked = check_value(raw)
    if checked.ok:
        assert checked.value is not None and checked.value.is_finite()
        assert Decimal(0) <= checked.value < Decimal("1e9")
    else:
        assert checked.reason


@given(st.decimals(allow_nan=True, allow_infinity=True) | st.floats())
def test_any_number_gets_an_answer(raw: Decimal | float) -> None:
    checked = check_value(raw)
    assert checked.ok or checked.reason
    if checked.ok:
        assert checked.value is not None and checked.value.is_finite() and checked.value >= 0


@given(st.decimals(min_value=0, max_value=Decimal("99999999"), places=3))
def test_every_sane_value_round_trips_through_text(value: Decimal) -> None:
    checked = check_value(str(value).replace(".", ","))
    assert checked.ok and checked.value == value
