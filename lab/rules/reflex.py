"""Reflex rules: a condition on a result adds a test to the same specimen (data, not code).

    [[reflex]]
    id = "TSH-FT4"
    test = "TSH"
    when = "outside_interval"      # or "above" / "below" (with value), or "flag" (with flags)
    add = "FT4"
    source = "..."

`reflexes_for` says which rules a result meets; the caller adds the tests (marked as reflex with
the rule id), and never twice for the same result. After a correction, `reflexes_for` on the new
value tells which reflex tests not yet run are to be cancelled (their rule no longer holds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from lab.errors import FieldProblem
from lab.rules.ruleset import Problems, load_toml, number


class ReflexCondition(StrEnum):
    OUTSIDE_INTERVAL = "outside_interval"
    ABOVE = "above"
    BELOW = "below"
    FLAG = "flag"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflexRule:
    id: str
    test: str
    when: ReflexCondition
    add: str
    value: Decimal | None = None
    flags: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflexSet:
    version: int
    rules: tuple[ReflexRule, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflexResult:
    """What a reflex rule sees of a result."""

    test_code: str
    value: Decimal | None
    comparator: str | None = None
    reference_low: Decimal | None = None
    reference_high: Decimal | None = None
    flags: tuple[str, ...] = ()  # the lab's flag (L/H/LL/HH) and the analyser's


def reflexes_for(reflex_set: ReflexSet, result: ReflexResult) -> list[ReflexRule]:
    return [
        rule for rule in reflex_set.rules if rule.test == result.test_code and _met(rule, result)
    ]


def _met(rule: ReflexRule, result: ReflexResult) -> bool:
    if rule.when is ReflexCondition.FLAG:
        return any(flag in rule.flags for flag in result.flags)
    value = result.value
    if value is None:
        return False
    below_certain = result.comparator in (None, "<", "<=")
    above_certain = result.comparator in (None, ">", ">=")
    if rule.when is ReflexCondition.ABOVE:
        return rule.value is not None and above_certain and value > rule.value
    if rule.when is ReflexCondition.BELOW:
        return rule.value is not None and below_certain and value < rule.value
    # Outside the interval: with no interval for this patient nothing can be said.
    if result.reference_low is None and result.reference_high is None:
        return False
    low_out = result.reference_low is not None and below_certain and value < result.reference_low
    high_out = result.reference_high is not None and above_certain and value > result.reference_high
    return low_out or high_out


def parse_reflexes(text: str, *, version: int, known_tests: Iterable[str]) -> ReflexSet:
    known = set(known_tests)
    document, index = load_toml(text, "reflex set")
    problems = Problems(index)
    for key in document:
        if key not in ("kind", "description", "reflex"):
            problems.add("", key, "unknown key (known: kind, description, reflex)")
    if document.get("kind", "reflex") != "reflex":
        problems.add("", "kind", "this is not a reflex rule set")
    rules: list[ReflexRule] = []
    seen: set[str] = set()
    entries = document.get("reflex", [])
    if not isinstance(entries, list):
        problems.add("reflex", None, "must be [[reflex]] tables")
        entries = []
    for position, entry in enumerate(entries):
        table = "reflex"
        line_of = index.array_lines.get(("reflex", position), 1)
        if not isinstance(entry, Mapping):
            problems.add(table, None, "must be a table")
            continue
        before = len(problems.found)
        _check(problems, line_of, entry, known, seen)
        if len(problems.found) > before:
            continue
        value = None
        if "value" in entry:
            value = number(problems, table, "value", entry["value"])
        rules.append(
            ReflexRule(
                id=entry["id"],
                test=entry["test"],
                when=ReflexCondition(entry["when"]),
                add=entry["add"],
                value=value,
                flags=tuple(entry.get("flags", ())),
                source=str(entry.get("source", "")),
            )
        )
    problems.raise_if_any("reflex set")
    return ReflexSet(version=version, rules=tuple(rules))


def _check(
    problems: Problems,
    line: int,
    entry: Mapping[str, object],
    known: set[str],
    seen: set[str],
) -> None:
    def add(reason: str) -> None:
        problems.found.append(FieldProblem(f"line {line}", f"reflex: {reason}"))

    allowed = {"id", "test", "when", "add", "value", "flags", "source"}
    for key in entry:
        if key not in allowed:
            add(f"unknown key {key!r} (known: {', '.join(sorted(allowed))})")
    rule_id = entry.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        add("give each rule an id")
    elif rule_id in seen:
        add(f"id {rule_id!r} is used twice")
    else:
        seen.add(rule_id)
    for key in ("test", "add"):
        code = entry.get(key)
        if not isinstance(code, str) or code not in known:
            add(f"{key}: unknown test {code!r} (not in the catalog)")
    try:
        when = ReflexCondition(str(entry.get("when")))
    except ValueError:
        add("when must be outside_interval, above, below or flag")
        return
    if when in (ReflexCondition.ABOVE, ReflexCondition.BELOW) and "value" not in entry:
        add(f"when = {when.value!r} needs value")
    flags = entry.get("flags")
    if when is ReflexCondition.FLAG and (
        not isinstance(flags, list) or not flags or not all(isinstance(f, str) for f in flags)
    ):
        add('when = "flag" needs flags = ["HH", ...]')
