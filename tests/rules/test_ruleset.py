"""Rule set documents: parsed whole or refused with the line and the reason."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.rules import RuleSetError, parse_reflexes, parse_ruleset
from lab.rules.demo import demo_texts
from lab.rules.ruleset import DeltaMethod, DeltaRule
from tests.rules.helpers import demo_catalog, demo_ruleset

UNITS = {code: facts.unit for code, facts in demo_catalog().items()}


def _refused(text: str) -> RuleSetError:
    with pytest.raises(RuleSetError) as caught:
        parse_ruleset(text, version=2, known_tests=UNITS)
    return caught.value


def test_the_demo_rule_set_parses_and_names_every_demo_test() -> None:
    ruleset = demo_ruleset()
    assert ruleset.version == 1
    assert set(ruleset.tests) == set(demo_catalog())
    assert ruleset.tests["KREA"].delta is not None
    assert ruleset.flags_for("generic").action("HH").value == "critical"


def test_unknown_test_is_refused_with_its_line() -> None:
    error = _refused(
        'kind = "autoverification"\n\n[test.NA]\nautoverify = true\n\n'
        "[test.XYZ]\nautoverify = true\n"
    )
    assert error.problems[0].field == "line 6"
    assert "unknown test 'XYZ'" in error.problems[0].message


def test_a_document_that_does_not_parse_is_refused_with_its_line() -> None:
    error = _refused("[test.NA]\nautoverify = tru\n")
    assert error.problems[0].field == "line 2"


def test_every_problem_is_reported_and_nothing_half_parsed() -> None:
    error = _refused(
        "[test.NA]\nautoverify = 1\nplausible = { low = 10, high = 5 }\n"
        'delta = { method = "rcv", window_hours = 24 }\nsurprise = 3\n'
    )
    messages = " | ".join(p.message for p in error.problems)
    assert "true or false" in messages
    assert "low must be below high" in messages
    assert "needs cvi and cva" in messages
    assert "unknown key" in messages
    assert {p.field for p in error.problems} == {"line 2", "line 3", "line 4", "line 5"}


def test_flag_actions_are_checked() -> None:
    error = _refused('[profile.generic]\nflags = { HH = "shout" }\n')
    assert "action must be ignore, hold or critical" in error.problems[0].message


def test_rcv_limits() -> None:
    rule = DeltaRule(
        method=DeltaMethod.RCV, window=__import__("datetime").timedelta(hours=24), cvi=4.4, cva=2.0
    )
    fall, rise = rule.limits()
    assert rise == pytest.approx(math.sqrt(2) * 1.96 * math.sqrt(4.4**2 + 2.0**2) / 100)
    assert fall == -rise


@given(cvi=st.floats(1, 100), cva=st.floats(0.5, 20))
def test_log_normal_limits_are_symmetric_in_log_space(cvi: float, cva: float) -> None:
    from datetime import timedelta

    rule = DeltaRule(method=DeltaMethod.RCV_LOGNORMAL, window=timedelta(hours=24), cvi=cvi, cva=cva)
    fall, rise = rule.limits()
    assert -1 < fall < 0 < rise
    assert (1 + fall) * (1 + rise) == pytest.approx(1.0)


def test_crp_log_normal_limits_are_asymmetric() -> None:
    """With a CVi of 42 % and CVa 2.5 % (illustrative) the log-normal limits are far from the
    symmetric RCV (about 117 %): a rise of over 200 %, a fall of about 65 %."""
    from datetime import timedelta

    rule = DeltaRule(method=DeltaMethod.RCV_LOGNORMAL, window=timedelta(hours=24), cvi=42, cva=2.5)
    fall, rise = rule.limits()
    sigma = math.sqrt(math.log((math.sqrt(42**2 + 2.5**2) / 100) ** 2 + 1))
    assert rise == pytest.approx(math.exp(1.96 * math.sqrt(2) * sigma) - 1)
    assert fall == pytest.approx(math.exp(-1.96 * math.sqrt(2) * sigma) - 1)
    assert rise > 2 and -0.7 < fall < -0.6


def test_the_demo_reflex_rules_parse() -> None:
    reflexes = parse_reflexes(demo_texts()["reflex"], version=1, known_tests=UNITS)
    assert [(r.id, r.test, r.add) for r in reflexes.rules] == [
        ("TSH-FT4", "TSH", "FT4"),
        ("CA-ALB", "CA", "ALB"),
    ]


def test_reflex_with_unknown_test_is_refused_with_its_line() -> None:
    text = (
        '[[reflex]]\nid = "A"\ntest = "TSH"\nwhen = "outside_interval"\nadd = "FT4"\n\n'
        '[[reflex]]\nid = "B"\ntest = "TSH"\nwhen = "above"\nadd = "FT3"\n'
    )
    with pytest.raises(RuleSetError) as caught:
        parse_reflexes(text, version=2, known_tests=UNITS)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["line 7", "line 7"]  # unknown test FT3 and the missing value
    assert Decimal  # keep the import used


@given(st.text(max_size=200))
def test_any_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        parse_ruleset(text, version=3, known_tests=UNITS)
    except RuleSetError as error:
        assert error.problems and all(p.field.startswith("line ") for p in error.problems)


def test_tsh_outside_its_interval_adds_ft4_and_inside_adds_nothing() -> None:
    from lab.rules import ReflexResult, reflexes_for

    reflexes = parse_reflexes(demo_texts()["reflex"], version=1, known_tests=UNITS)

    def added(value: str, comparator: str | None = None, low: str | None = "0.3") -> list[str]:
        result = ReflexResult(
            test_code="TSH",
            value=Decimal(value),
            comparator=comparator,
            reference_low=Decimal(low) if low else None,
            reference_high=Decimal("4.2") if low else None,
        )
        return [rule.add for rule in reflexes_for(reflexes, result)]

    assert added("8.0") == ["FT4"]
    assert added("0.05") == ["FT4"]
    assert added("2.0") == []
    assert added("0.01", comparator="<") == ["FT4"]  # "<0.01" is certainly below 0.3
    assert added("8.0", low=None) == []  # no interval for this patient: nothing can be said
