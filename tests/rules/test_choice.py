"""Which measurement a rule set reports when a test's measurements differ."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.rules import RuleSetError, parse_ruleset
from lab.rules.choice import Measured, MeasurementChoice, chosen

PERSON, LATEST, IN_RANGE = MeasurementChoice


def m(value: str, comparator: str | None = None) -> Measured:
    return Measured(value=Decimal(value), comparator=comparator)


def test_each_policy() -> None:
    over_then_diluted = [m("300", ">"), m("420")]
    assert chosen(PERSON, over_then_diluted) is None
    assert chosen(LATEST, over_then_diluted) == 1
    assert chosen(IN_RANGE, over_then_diluted) == 1
    # The measurement within the range came first: it stays the one reported.
    assert chosen(IN_RANGE, [m("420"), m("300", ">")]) == 0
    # Two within the range that differ, or none within it: a person chooses.
    assert chosen(IN_RANGE, [m("4.1"), m("6.4")]) is None
    assert chosen(IN_RANGE, [m("300", ">"), m("1500", ">")]) is None
    # Measurements that agree need no choice.
    assert chosen(PERSON, [m("4.1"), m("4.1")]) == 1
    assert chosen(PERSON, []) is None


@given(
    policy=st.sampled_from(list(MeasurementChoice)),
    measured=st.lists(
        st.builds(
            Measured,
            value=st.decimals(min_value=0, max_value=50, places=1),
            comparator=st.sampled_from([None, "<", ">"]),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_properties(policy: MeasurementChoice, measured: list[Measured]) -> None:
    pick = chosen(policy, measured)
    if len({x.key for x in measured}) == 1:
        assert pick == len(measured) - 1
    elif policy is PERSON:
        assert pick is None
    if pick is not None and policy is IN_RANGE and len({x.key for x in measured}) > 1:
        assert measured[pick].comparator is None  # never one outside the measuring range


def test_the_rule_set_names_it_per_test() -> None:
    text = '[test.CRP]\nautoverify = true\nreport_measurement = "in_range"\n'
    ruleset = parse_ruleset(text, version=1, known_tests={"CRP": "mg/L"})
    crp = ruleset.for_test("CRP")
    assert crp is not None and crp.report_measurement is IN_RANGE
    with pytest.raises(RuleSetError, match="report_measurement"):
        parse_ruleset(
            '[test.CRP]\nreport_measurement = "best"\n', version=1, known_tests={"CRP": "mg/L"}
        )
