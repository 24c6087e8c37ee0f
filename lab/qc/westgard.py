"""Westgard multirules: judge one QC run against the accepted runs before it. Pure: no I/O.

A *run* is the control results of one test on one analyser measured together (the levels sent in
one ASTM message, or typed in together). Each point carries the target mean and SD in force for
its lot, so a point is judged by its z-score `(value - mean) / sd` and runs of different lots can
stand in one history.

The rules (Westgard JO, Barry PL, Hunt MR, Groth T. A multi-rule Shewhart chart for quality
control in clinical chemistry. Clin Chem 1981;27:493-501; the rules' current wording on
westgard.com "Westgard Rules"):

| rule | fires when                                                  | looks at              |
| ---- | ----------------------------------------------------------- | --------------------- |
| 1-2s | one control beyond +-2 SD (a warning, never a rejection)    | this run              |
| 1-3s | one control beyond +-3 SD                                   | this run              |
| 2-2s | two controls beyond the same 2 SD limit: two levels of this | this run; one level   |
|      | run, or one level in this run and its last accepted run     | across two runs       |
| R-4s | one control above +2 SD and another below -2 SD             | this run only         |
| 4-1s | four consecutive controls beyond the same 1 SD limit        | one level across runs |
|      |                                                             | all levels and runs   |
| 10x  | ten consecutive controls on the same side of the mean       | as 4-1s               |

R-4s is never applied across runs: a range across runs mixes two runs' random error with any
shift between them, which is what 2-2s and 4-1s look for (Westgard, "Westgard Rules", R-4s).

"Consecutive across levels" is counted over whole runs, newest first: the rule fires when the
fewest most recent runs that hold at least N points are all beyond the same limit. That keeps the
answer independent of the order in which the levels of a run happen to be listed.

All rejection rules in the chosen set are applied to every run; 1-2s does not gate them (the
computer applies every rule, so no rejection waits for a warning first).

Rejected runs stay stored but are not history: the runs before a new run are the *accepted* runs
(see `judge_run`), and the statistics leave rejected points out (`lot_statistics`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Rule(StrEnum):
    R_1_2S = "1-2s"
    R_1_3S = "1-3s"
    R_2_2S = "2-2s"
    R_R_4S = "R-4s"
    R_4_1S = "4-1s"
    R_10X = "10x"


class Severity(StrEnum):
    WARNING = "warning"
    REJECT = "reject"


class Scope(StrEnum):
    WITHIN_RUN = "within_run"  # across the levels of this run
    ACROSS_RUNS = "across_runs"  # one level across this run and runs before it
    ACROSS_RUNS_AND_LEVELS = "across_runs_and_levels"


class RunStatus(StrEnum):
    ACCEPTED = "accepted"  # no rejection rule fired (warnings may have)
    REJECTED = "rejected"


SEVERITY = {
    Rule.R_1_2S: Severity.WARNING,
    Rule.R_1_3S: Severity.REJECT,
    Rule.R_2_2S: Severity.REJECT,
    Rule.R_R_4S: Severity.REJECT,
    Rule.R_4_1S: Severity.REJECT,
    Rule.R_10X: Severity.REJECT,
}

# The classic multirule of 1981 (with the 1-2s warning); the default when a test has no sigma.
MULTIRULE: frozenset[Rule] = frozenset(Rule)

# How many consecutive points the two "trend" rules need.
FOUR_ONE_S_POINTS = 4
TEN_X_POINTS = 10

# Enough accepted runs before this one to decide every rule (10x needs at most ten).
HISTORY_RUNS = TEN_X_POINTS - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One control result: the level of the material, the value, and the target in force."""

    level: int
    value: float
    mean: float
    sd: float
    point_id: int | None = None  # the stored row, when there is one

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and math.isfinite(self.mean)):
            raise ValueError("a control value and its target mean are finite numbers")
        if not (math.isfinite(self.sd) and self.sd > 0):
            raise ValueError("a target SD is a positive number")

    @property
    def z(self) -> float:
        return (self.value - self.mean) / self.sd


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """The control points of one test on one analyser measured together, one per level."""

    run_id: int
    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        levels = [p.level for p in self.points]
        if not levels:
            raise ValueError("a run holds at least one control point")
        if len(set(levels)) != len(levels):
            raise ValueError("a run holds one point per level")

    @property
    def levels(self) -> frozenset[int]:
        return frozenset(p.level for p in self.points)

    def point(self, level: int) -> Point | None:
        return next((p for p in self.points if p.level == level), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PointRef:
    """Which point a decision rests on: the run and the level (and the z-score it had)."""

    run_id: int
    level: int
    z: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    rule: Rule
    scope: Scope
    points: tuple[PointRef, ...]

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.rule]

    def text(self) -> str:
        where = ", ".join(f"run {p.run_id} level {p.level} ({p.z:+.2f} SD)" for p in self.points)
        return f"{self.rule} ({self.scope.replace('_', ' ')}): {where}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """The decision on one run: accepted or rejected, with every rule that fired and why."""

    run_id: int
    status: RunStatus
    violations: tuple[Violation, ...] = field(default_factory=tuple)
    rules_applied: frozenset[Rule] = MULTIRULE

    @property
    def rejections(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity is Severity.REJECT)

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity is Severity.WARNING)

    @property
    def first_rule(self) -> Rule | None:
        """The rule named on a lock: the first rejection in the order of `Rule`."""
        order = list(Rule)
        rejections = sorted(self.rejections, key=lambda v: order.index(v.rule))
        return rejections[0].rule if rejections else None


def _ref(run: Run, point: Point) -> PointRef:
    return PointRef(run_id=run.run_id, level=point.level, z=point.z)


def _sorted_points(run: Run) -> list[Point]:
    return sorted(run.points, key=lambda p: p.level)


def _same_side_beyond(zs: Iterable[float], limit: float) -> bool:
    values = list(zs)
    return bool(values) and (all(z > limit for z in values) or all(z < -limit for z in values))


def _level_series(run: Run, history: Sequence[Run], level: int, count: int) -> list[PointRef]:
    """The last `count` points of one level, oldest first, ending with this run's point."""
    series: list[PointRef] = []
    for earlier in (run, *reversed(history)):
        point = earlier.point(level)
        if point is not None:
            series.append(_ref(earlier, point))
            if len(series) == count:
                break
    return list(reversed(series))


def _whole_run_series(run: Run, history: Sequence[Run], count: int) -> list[PointRef]:
    """The points of the fewest most recent runs that hold at least `count` points."""
    series: list[PointRef] = []
    for earlier in (run, *reversed(history)):
        series.extend(_ref(earlier, p) for p in _sorted_points(earlier))
        if len(series) >= count:
            return series
    return []


def _trend(
    rule: Rule, run: Run, history: Sequence[Run], *, count: int, limit: float
) -> list[Violation]:
    """4-1s (limit 1) and 10x (limit 0): per level across runs, then across levels and runs."""
    found: list[Violation] = []
    for point in _sorted_points(run):
        series = _level_series(run, history, point.level, count)
        if len(series) == count and _same_side_beyond((p.z for p in series), limit):
            found.append(Violation(rule=rule, scope=Scope.ACROSS_RUNS, points=tuple(series)))
    if len(run.levels) > 1 or any(len(r.levels) > 1 for r in history[-count:]):
        mixed = _whole_run_series(run, history, count)
        levels_in = {p.level for p in mixed}
        if mixed and len(levels_in) > 1 and _same_side_beyond((p.z for p in mixed), limit):
            scope = Scope.ACROSS_RUNS_AND_LEVELS
            if all(p.run_id == run.run_id for p in mixed):
                scope = Scope.WITHIN_RUN
            found.append(Violation(rule=rule, scope=scope, points=tuple(mixed)))
    return found


def _one_beyond(rule: Rule, run: Run, limit: float) -> list[Violation]:
    return [
        Violation(rule=rule, scope=Scope.WITHIN_RUN, points=(_ref(run, p),))
        for p in _sorted_points(run)
        if abs(p.z) > limit
    ]


def _two_two_s(run: Run, history: Sequence[Run]) -> list[Violation]:
    found: list[Violation] = []
    points = _sorted_points(run)
    for sign in (1, -1):
        beyond = [p for p in points if sign * p.z > 2]
        if len(beyond) >= 2:
            refs = tuple(_ref(run, p) for p in beyond)
            found.append(Violation(rule=Rule.R_2_2S, scope=Scope.WITHIN_RUN, points=refs))
    for point in points:
        series = _level_series(run, history, point.level, 2)
        if len(series) == 2 and _same_side_beyond((p.z for p in series), 2):
            found.append(Violation(rule=Rule.R_2_2S, scope=Scope.ACROSS_RUNS, points=tuple(series)))
    return found


def _range_four_s(run: Run) -> list[Violation]:
    points = _sorted_points(run)
    high = [p for p in points if p.z > 2]
    low = [p for p in points if p.z < -2]
    if not (high and low):
        return []
    top = max(high, key=lambda p: p.z)
    bottom = min(low, key=lambda p: p.z)
    refs = tuple(_ref(run, p) for p in sorted((top, bottom), key=lambda p: p.level))
    return [Violation(rule=Rule.R_R_4S, scope=Scope.WITHIN_RUN, points=refs)]


def judge_run(run: Run, history: Sequence[Run], *, rules: frozenset[Rule] = MULTIRULE) -> Judgement:
    """Judge `run` against `history`: the accepted runs of the same test on the same analyser
    before it, oldest first (rejected runs are left out by the caller: they are not history).
    """
    history = list(history[-HISTORY_RUNS:]) if len(history) > HISTORY_RUNS else list(history)
    violations: list[Violation] = []
    if Rule.R_1_2S in rules:
        violations += _one_beyond(Rule.R_1_2S, run, 2)
    if Rule.R_1_3S in rules:
        violations += _one_beyond(Rule.R_1_3S, run, 3)
    if Rule.R_2_2S in rules:
        violations += _two_two_s(run, history)
    if Rule.R_R_4S in rules:
        violations += _range_four_s(run)
    if Rule.R_4_1S in rules:
        violations += _trend(Rule.R_4_1S, run, history, count=FOUR_ONE_S_POINTS, limit=1)
    if Rule.R_10X in rules:
        violations += _trend(Rule.R_10X, run, history, count=TEN_X_POINTS, limit=0)
    rejected = any(SEVERITY[v.rule] is Severity.REJECT for v in violations)
    return Judgement(
        run_id=run.run_id,
        status=RunStatus.REJECTED if rejected else RunStatus.ACCEPTED,
        violations=tuple(violations),
        rules_applied=rules,
    )


def judge_all(runs: Sequence[Run], *, rules: frozenset[Rule] = MULTIRULE) -> list[Judgement]:
    """Judge a test's runs in the order given (the order of their run times), each against the
    runs accepted before it. What the service stores one run at a time equals this."""
    accepted: list[Run] = []
    judgements: list[Judgement] = []
    for run in runs:
        judgement = judge_run(run, accepted, rules=rules)
        judgements.append(judgement)
        if judgement.status is RunStatus.ACCEPTED:
            accepted.append(run)
    return judgements


# --- Rule sets chosen by sigma ------------------------------------------------------------------


def sigma_metric(*, tea_percent: float, bias_percent: float, cv_percent: float) -> float | None:
    """Sigma = (TEa - |bias|) / CV, all in percent (Westgard Sigma Rules). None without a CV."""
    if cv_percent <= 0 or not math.isfinite(cv_percent):
        return None
    return (tea_percent - abs(bias_percent)) / cv_percent


def rules_for_sigma(sigma: float | None) -> frozenset[Rule]:
    """The higher the sigma, the fewer rules are needed to catch a medically important error
    (Westgard JO, Westgard SA. Westgard Sigma Rules, 2014, two levels of control):
    6 sigma and more: 1-3s; 5 to 6: 1-3s/2-2s/R-4s; 4 to 5: 1-3s/2-2s/R-4s/4-1s; below 4 (or
    unknown): the full multirule with 10x. The 1-2s warning is always shown.
    """
    if sigma is None or not math.isfinite(sigma) or sigma < 4:
        return MULTIRULE
    if sigma >= 6:
        return frozenset({Rule.R_1_2S, Rule.R_1_3S})
    if sigma >= 5:
        return frozenset({Rule.R_1_2S, Rule.R_1_3S, Rule.R_2_2S, Rule.R_R_4S})
    return frozenset({Rule.R_1_2S, Rule.R_1_3S, Rule.R_2_2S, Rule.R_R_4S, Rule.R_4_1S})


def parse_rules(names: Iterable[str]) -> frozenset[Rule]:
    """Rule names as stored (`"1-3s"`, ...); an unknown name is an error, not ignored."""
    return frozenset(Rule(name) for name in names)


# --- Statistics of a lot ------------------------------------------------------------------------

ESTABLISH_POINTS = 20  # a new lot's mean and SD from its first 20 accepted points, then fixed


@dataclass(frozen=True, slots=True, kw_only=True)
class Statistics:
    n: int
    mean: float
    sd: float  # sample SD (n - 1)

    @property
    def cv_percent(self) -> float | None:
        return abs(self.sd / self.mean) * 100 if self.mean else None


def lot_statistics(values: Sequence[float]) -> Statistics | None:
    """Mean and sample SD (n - 1) of the accepted points given; None under two points.
    The caller passes accepted points only: rejected points are kept but never counted."""
    if len(values) < 2:
        return None
    return Statistics(n=len(values), mean=statistics.fmean(values), sd=statistics.stdev(values))


def established_target(values: Sequence[float]) -> Statistics | None:
    """The fixed target of a new lot: mean and sample SD of its first 20 accepted points (more
    points given are ignored: once fixed, the target no longer follows the data). None if fewer
    than 20, or if they do not vary (an SD of 0 cannot judge anything)."""
    if len(values) < ESTABLISH_POINTS:
        return None
    found = lot_statistics(values[:ESTABLISH_POINTS])
    if found is None or found.sd <= 0:
        return None
    return found
