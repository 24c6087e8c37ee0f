"""Flags from reference ranges and critical limits (HL7 table 0078)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.results.flags import NumericValue, compute, parse_numeric

D = Decimal


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [
        ("5.2", "5.2", None),
        ("5,2", "5.2", None),
        ("<5", "5", "<"),
        ("> 100", "100", ">"),
        ("-1,5", "-1.5", None),
        ("<=0,3", "0.3", "<="),
    ],
)
def test_parse(text: str, value: str, comparator: str | None) -> None:
    parsed = parse_numeric(text)
    assert parsed.value == D(value) and parsed.comparator == comparator


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "NaN", "Infinity", "5,2,1", "<"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_numeric(text)


def flags(text: str) -> list[str]:
    return compute(
        parse_numeric(text),
        low=D("3.6"),
        high=D("4.6"),
        critical_low=D("2.5"),
        critical_high=D("6.5"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4.0", []),
        ("3.6", []),
        ("4.6", []),
        ("3.5", ["L"]),
        ("4.7", ["H"]),
        ("2.4", ["LL"]),
        ("6.6", ["HH"]),
        ("2.5", ["L"]),
        ("6.5", ["H"]),
        ("<2.5", ["LL"]),
        ("<4", []),
        (">6.5", ["HH"]),
        (">4", []),
        ("<3.6", ["L"]),
    ],
)
def test_flags(text: str, expected: list[str]) -> None:
    assert flags(text) == expected


@given(st.decimals(min_value=-1000, max_value=1000, allow_nan=False, places=3))
def test_flags_agree_with_the_limits(value: Decimal) -> None:
    result = compute(
        NumericValue(value=value), low=D(1), high=D(2), critical_low=D(0), critical_high=D(3)
    )
    expected = (
        ["LL"]
        if value < 0
        else ["HH"]
        if value > 3
        else ["L"]
        if value < 1
        else ["H"]
        if value > 2
        else []
    )
    assert result == expected


def test_no_range_no_flag() -> None:
    assert (
        compute(
            NumericValue(value=D(99)), low=None, high=None, critical_low=None, critical_high=None
        )
        == []
    )
