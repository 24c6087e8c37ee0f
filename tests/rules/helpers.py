"""Shared builders for the judgement tests: the demo catalog and rule set as the seed loads them."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

from lab.catalog.service import DEMO_CATALOG, years_to_days
from lab.rules import Interval, RuleSet, TestFacts, parse_ruleset
from lab.rules.demo import DEMO_AUTOVERIFICATION

MEASURED = datetime(2026, 11, 27, 8, 15, tzinfo=UTC)


def _decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@cache
def demo_catalog() -> dict[str, TestFacts]:
    document = tomllib.loads(DEMO_CATALOG.read_text(encoding="utf-8"))
    facts: dict[str, TestFacts] = {}
    for entry in document["test"]:
        intervals = []
        for ri in entry.get("reference", []):
            low_days = ri.get("age_min_days")
            high_days = ri.get("age_max_days")
            intervals.append(
                Interval(
                    sex=ri.get("sex", ""),
                    age_min_days=low_days
                    if low_days is not None
                    else years_to_days(Decimal(str(ri.get("age_min_years", 0)))),
                    age_max_days=high_days
                    if high_days is not None
                    else years_to_days(Decimal(str(ri.get("age_max_years", 120)))),
                    low=_decimal(ri.get("low")),
                    high=_decimal(ri.get("high")),
                )
            )
        facts[entry["code"]] = TestFacts(
            code=entry["code"],
            unit=entry.get("unit"),
            reference_intervals=tuple(intervals),
            critical_low=_decimal(entry.get("critical_low")),
            critical_high=_decimal(entry.get("critical_high")),
        )
    return facts


@cache
def demo_ruleset() -> RuleSet:
    units = {code: facts.unit for code, facts in demo_catalog().items()}
    return parse_ruleset(
        DEMO_AUTOVERIFICATION.read_text(encoding="utf-8"), version=1, known_tests=units
    )


def years(age: int) -> int:
    return years_to_days(Decimal(age))
