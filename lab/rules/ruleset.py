"""Autoverification rule sets: a versioned TOML text, parsed into frozen rules or refused.

A rule set is one document for the whole lab (its version is the one written on every result
it judged). It has one table per test and one per analyser profile:

    [test.K]
    autoverify = true                 # AUTO15 step 0: the test may be released without a person
    plausible = { low = 1.0, high = 10.0 }        # step 5: values no living patient can have
    indices = { h = 50, comment = "HEM" }         # step 4: serum index limits
    delta = { method = "rcv", cvi = 4.6, cva = 1.5, window_hours = 72 }   # step 7
    autoverify_range = { low = 3.0, high = 6.0 }  # step 8 (optional)
    critical_autoverify = false       # step 9: a critical result always waits for a person
    below_comparator = "release"      # step 3: "<x" is a result (CRP below its detection limit)
    report_measurement = "in_range"   # measurements that differ: person, latest or in_range

    [profile.generic]
    unknown = "hold"                  # any flag not named below
    flags = { N = "ignore", HH = "critical", LL = "critical", ">" = "hold" }

The parser refuses a document that does not parse or names an unknown test, key or action, with
the line and the reason, and never returns half a rule set.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from lab.errors import FieldProblem, InvalidInput
from lab.rules.choice import MeasurementChoice


class RuleSetError(InvalidInput):
    """A rule set (or formula or reflex document) that cannot be used; every problem has a line."""


class FlagAction(StrEnum):
    IGNORE = "ignore"  # informative only (N, or L/H that the lab's own interval decides)
    HOLD = "hold"  # hold with `instrument_flag`
    CRITICAL = "critical"  # ask for a critical call, exactly like the lab's own critical limit


class DeltaMethod(StrEnum):
    RCV = "rcv"  # symmetric reference change value, per cent
    RCV_LOGNORMAL = "rcv_lognormal"  # Fokkema et al., Clin Chem 2006;52:1457: asymmetric limits
    ABSOLUTE = "absolute"  # a change in the test's unit (e.g. KDIGO creatinine 26.5 umol/L/48 h)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaRule:
    method: DeltaMethod
    window: timedelta
    cvi: float | None = None  # within-subject biological variation, per cent
    cva: float | None = None  # analytical variation, per cent
    z: float = 1.96  # 95 %, two-sided
    change: Decimal | None = None  # absolute method: the largest change let through
    min_change: Decimal | None = None  # a change smaller than this is never held

    def limits(self) -> tuple[float, float]:
        """(fall, rise) as fractions of the previous value: RCV methods only."""
        if self.cvi is None or self.cva is None:
            raise ValueError("an RCV delta rule needs cvi and cva")
        cv_total = math.sqrt(self.cva**2 + self.cvi**2) / 100
        if self.method is DeltaMethod.RCV:
            rcv = math.sqrt(2) * self.z * cv_total
            return -rcv, rcv
        sigma = math.sqrt(math.log(cv_total**2 + 1))
        return (
            math.exp(-self.z * math.sqrt(2) * sigma) - 1,
            math.exp(self.z * math.sqrt(2) * sigma) - 1,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexLimits:
    """Serum index limits above which the result is held with `interference`."""

    h: Decimal | None = None
    i: Decimal | None = None
    l: Decimal | None = None  # noqa: E741 - the index is called L on every analyser
    comment: str = ""  # coded comment for the record, e.g. HEM


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRules:
    __test__ = False  # not a pytest test class

    code: str
    autoverify: bool = False
    plausible_low: Decimal | None = None
    plausible_high: Decimal | None = None
    indices: IndexLimits | None = None
    delta: DeltaRule | None = None
    autoverify_low: Decimal | None = None
    autoverify_high: Decimal | None = None
    critical_autoverify: bool = False
    below_comparator_releases: bool = False
    above_comparator_releases: bool = False
    # Which of the test's measurements is reported when they differ (lab.rules.choice).
    report_measurement: MeasurementChoice = MeasurementChoice.PERSON


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagMapping:
    profile: str
    actions: Mapping[str, FlagAction]
    unknown: FlagAction = FlagAction.HOLD

    def action(self, flag: str) -> FlagAction:
        return self.actions.get(flag.strip(), self.unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSet:
    version: int
    tests: Mapping[str, TestRules] = field(default_factory=lambda: MappingProxyType({}))
    flag_profiles: Mapping[str, FlagMapping] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""

    def for_test(self, code: str) -> TestRules | None:
        return self.tests.get(code)

    def flags_for(self, profile: str) -> FlagMapping:
        """The profile's mapping; a profile the rule set does not name holds every flag."""
        mapping = self.flag_profiles.get(profile)
        if mapping is None:
            return FlagMapping(profile=profile, actions=MappingProxyType({}))
        return mapping


# ---------------------------------------------------------------------------- where things are


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


class LineIndex:
    """Where each table and key of a TOML text starts, so a problem can name its line.

    tomllib keeps no positions; the TOML grammar puts every table header and top-level key at
    the start of a line, which is all this needs (keys inside inline tables get their key's line).
    """

    def __init__(self, text: str) -> None:
        self.tables: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.array_lines: dict[tuple[str, int], int] = {}  # [[name]] -> n-th entry's line
        arrays: dict[str, int] = {}
        current = ""
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                current = ".".join(part.strip().strip("\"'") for part in header[1].split("."))
                self.tables.setdefault(current, number)
                if line.lstrip().startswith("[["):
                    count = arrays.get(current, 0)
                    self.array_lines[(current, count)] = number
                    arrays[current] = count + 1
                continue
            key = _KEY.match(line)
            if key:
                self.keys.setdefault((current, key[1].strip("\"'")), number)

    def line(self, table: str, key: str | None = None) -> int:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        if table in self.tables:
            return self.tables[table]
        parent, _, last = table.rpartition(".")
        if (parent, last) in self.keys:
            return self.keys[(parent, last)]
        return 1


class Problems:
    def __init__(self, index: LineIndex) -> None:
        self.index = index
        self.found: list[FieldProblem] = []

    def add(self, table: str, key: str | None, reason: str) -> None:
        line = self.index.line(table, key)
        where = f"{table}.{key}" if key else table
        self.found.append(FieldProblem(f"line {line}", f"{where}: {reason}"))

    def raise_if_any(self, what: str) -> None:
        if self.found:
            first = self.found[0]
            raise RuleSetError(
                f"the {what} is refused: {first.field}: {first.message}"
                + (f" (and {len(self.found) - 1} more)" if len(self.found) > 1 else ""),
                problems=list(self.found),
            )


def load_toml(text: str, what: str) -> tuple[dict[str, Any], LineIndex]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match[1] if match else "1"
        raise RuleSetError(
            f"the {what} does not parse: {exc}",
            problems=[FieldProblem(f"line {line}", f"does not parse: {exc}")],
        ) from None
    return document, LineIndex(text)


def number(problems: Problems, table: str, key: str, value: object) -> Decimal | None:
    """A TOML number as Decimal (via its text, so 0.1 stays 0.1), or a problem."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(table, key, f"must be a number, not {value!r}")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.add(table, key, "must be a finite number")
        return None
    return Decimal(str(value))


def _known_keys(problems: Problems, table: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.add(table, key, f"unknown key (known: {', '.join(sorted(allowed))})")


def _low_high(
    problems: Problems, table: str, key: str, value: object
) -> tuple[Decimal | None, Decimal | None]:
    if not isinstance(value, dict):
        problems.add(table, key, "must be a table like { low = 1, high = 10 }")
        return None, None
    _known_keys(problems, f"{table}.{key}", value, {"low", "high"})
    low = number(problems, table, key, value["low"]) if "low" in value else None
    high = number(problems, table, key, value["high"]) if "high" in value else None
    if low is not None and high is not None and low >= high:
        problems.add(table, key, "low must be below high")
    if "low" not in value and "high" not in value:
        problems.add(table, key, "give low, high or both")
    return low, high


# ---------------------------------------------------------------------------- the parser


_TEST_KEYS = {
    "autoverify",
    "plausible",
    "indices",
    "delta",
    "autoverify_range",
    "critical_autoverify",
    "below_comparator",
    "above_comparator",
    "report_measurement",
}


def parse_ruleset(text: str, *, version: int, known_tests: Mapping[str, str | None]) -> RuleSet:
    """Parse a rule set; `known_tests` maps the catalog's test codes to their units."""
    document, index = load_toml(text, "rule set")
    problems = Problems(index)
    _known_keys(problems, "", document, {"kind", "description", "test", "profile"})
    if document.get("kind", "autoverification") != "autoverification":
        problems.add("", "kind", "this is not an autoverification rule set")
    tests: dict[str, TestRules] = {}
    raw_tests = document.get("test", {})
    if not isinstance(raw_tests, dict):
        problems.add("test", None, "must be tables like [test.K]")
        raw_tests = {}
    for code, entry in raw_tests.items():
        table = f"test.{code}"
        if code not in known_tests:
            problems.add(table, None, f"unknown test {code!r} (not in the catalog)")
            continue
        if not isinstance(entry, dict):
            problems.add(table, None, "must be a table")
            continue
        rules = _test_rules(problems, table, code, entry)
        if rules is not None:
            tests[code] = rules
    profiles: dict[str, FlagMapping] = {}
    raw_profiles = document.get("profile", {})
    if not isinstance(raw_profiles, dict):
        problems.add("profile", None, "must be tables like [profile.generic]")
        raw_profiles = {}
    for name, entry in raw_profiles.items():
        mapping = _flag_mapping(problems, f"profile.{name}", name, entry)
        if mapping is not None:
            profiles[name] = mapping
    problems.raise_if_any("rule set")
    description = document.get("description", "")
    return RuleSet(
        version=version,
        tests=MappingProxyType(tests),
        flag_profiles=MappingProxyType(profiles),
        description=str(description),
    )


def _test_rules(
    problems: Problems, table: str, code: str, entry: Mapping[str, Any]
) -> TestRules | None:
    before = len(problems.found)
    _known_keys(problems, table, entry, _TEST_KEYS)
    autoverify = entry.get("autoverify", False)
    if not isinstance(autoverify, bool):
        problems.add(table, "autoverify", "must be true or false")
    critical_autoverify = entry.get("critical_autoverify", False)
    if not isinstance(critical_autoverify, bool):
        problems.add(table, "critical_autoverify", "must be true or false")
    plausible_low = plausible_high = None
    if "plausible" in entry:
        plausible_low, plausible_high = _low_high(problems, table, "plausible", entry["plausible"])
    av_low = av_high = None
    if "autoverify_range" in entry:
        av_low, av_high = _low_high(problems, table, "autoverify_range", entry["autoverify_range"])
    comparators = {}
    for key in ("below_comparator", "above_comparator"):
        choice = entry.get(key, "hold")
        if choice not in ("hold", "release"):
            problems.add(table, key, 'must be "hold" or "release"')
        comparators[key] = choice == "release"
    indices = _indices(problems, table, entry["indices"]) if "indices" in entry else None
    delta = _delta(problems, table, entry["delta"]) if "delta" in entry else None
    report = entry.get("report_measurement", MeasurementChoice.PERSON.value)
    if report not in set(MeasurementChoice):
        choices = ", ".join(f'"{c.value}"' for c in MeasurementChoice)
        problems.add(table, "report_measurement", f"must be one of {choices}")
    if len(problems.found) > before:
        return None
    return TestRules(
        code=code,
        autoverify=bool(autoverify),
        plausible_low=plausible_low,
        plausible_high=plausible_high,
        indices=indices,
        delta=delta,
        autoverify_low=av_low,
        autoverify_high=av_high,
        critical_autoverify=bool(critical_autoverify),
        below_comparator_releases=comparators["below_comparator"],
        above_comparator_releases=comparators["above_comparator"],
        report_measurement=MeasurementChoice(report),
    )


def _indices(problems: Problems, table: str, value: object) -> IndexLimits | None:
    if not isinstance(value, dict):
        problems.add(table, "indices", 'must be a table like { h = 50, comment = "HEM" }')
        return None
    _known_keys(problems, f"{table}.indices", value, {"h", "i", "l", "comment"})
    limits = {
        key: number(problems, table, "indices", value[key]) if key in value else None
        for key in ("h", "i", "l")
    }
    comment = value.get("comment", "")
    if not isinstance(comment, str):
        problems.add(table, "indices", "comment must be a text code")
        comment = ""
    if all(limit is None for limit in limits.values()):
        problems.add(table, "indices", "give at least one of h, i, l")
    return IndexLimits(h=limits["h"], i=limits["i"], l=limits["l"], comment=comment)


def _delta(problems: Problems, table: str, value: object) -> DeltaRule | None:
    if not isinstance(value, dict):
        problems.add(table, "delta", 'must be a table like { method = "rcv", ... }')
        return None
    _known_keys(
        problems,
        f"{table}.delta",
        value,
        {"method", "cvi", "cva", "z", "change", "min_change", "window_hours"},
    )
    try:
        method = DeltaMethod(value.get("method", ""))
    except ValueError:
        problems.add(table, "delta", "method must be rcv, rcv_lognormal or absolute")
        return None
    hours = value.get("window_hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 3650:
        problems.add(table, "delta", "window_hours must be a number of hours above 0")
        return None
    floats: dict[str, float | None] = {}
    for key in ("cvi", "cva", "z"):
        raw = value.get(key)
        if raw is None:
            floats[key] = None
        elif isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < 1000:
            problems.add(table, "delta", f"{key} must be a positive number")
            floats[key] = None
        else:
            floats[key] = float(raw)
    change = number(problems, table, "delta", value["change"]) if "change" in value else None
    min_change = (
        number(problems, table, "delta", value["min_change"]) if "min_change" in value else None
    )
    if method is DeltaMethod.ABSOLUTE and (change is None or change <= 0):
        problems.add(table, "delta", "the absolute method needs change = a positive number")
    if method is not DeltaMethod.ABSOLUTE and (floats["cvi"] is None or floats["cva"] is None):
        problems.add(table, "delta", f"the {method.value} method needs cvi and cva (per cent)")
    return DeltaRule(
        method=method,
        window=timedelta(hours=float(hours)),
        cvi=floats["cvi"],
        cva=floats["cva"],
        z=floats["z"] or 1.96,
        change=change,
        min_change=min_change,
    )


def _flag_mapping(problems: Problems, table: str, name: str, entry: object) -> FlagMapping | None:
    if not isinstance(entry, dict):
        problems.add(table, None, "must be a table")
        return None
    _known_keys(problems, table, entry, {"unknown", "flags"})
    try:
        unknown = FlagAction(entry.get("unknown", "hold"))
    except ValueError:
        problems.add(table, "unknown", "must be ignore, hold or critical")
        return None
    flags = entry.get("flags", {})
    if not isinstance(flags, dict):
        problems.add(table, "flags", 'must be a table like { N = "ignore" }')
        return None
    actions: dict[str, FlagAction] = {}
    for flag, action in flags.items():
        try:
            actions[flag.strip()] = FlagAction(action)
        except ValueError:
            problems.add(table, "flags", f"flag {flag!r}: action must be ignore, hold or critical")
    return FlagMapping(profile=name, actions=MappingProxyType(actions), unknown=unknown)
