"""Westgard multirules: each rule's textbook cases, the cases that must not fire, and properties.

Points are written as z-scores against a target of mean 100, SD 2 (value = 100 + 2 z), levels 1
and 2, so each case reads as it does in the textbook tables.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.qc.westgard import (
    MULTIRULE,
    Point,
    Rule,
    Run,
    RunStatus,
    Scope,
    Severity,
    established_target,
    judge_all,
    judge_run,
    lot_statistics,
    parse_rules,
    rules_for_sigma,
    sigma_metric,
)

MEAN, SD = 100.0, 2.0


def point(level: int, z: float) -> Point:
    return Point(level=level, value=MEAN + SD * z, mean=MEAN, sd=SD)


def run(run_id: int, *zs: float | None) -> Run:
    """zs by level: run(7, 1.0, None, 0.5) has level 1 at +1 SD and level 3 at +0.5 SD."""
    points = tuple(point(level, z) for level, z in enumerate(zs, start=1) if z is not None)
    return Run(run_id=run_id, points=points)


def fired(judgement_rules: object) -> set[tuple[str, str]]:
    from lab.qc.westgard import Judgement

    assert isinstance(judgement_rules, Judgement)
    return {(v.rule.value, v.scope.value) for v in judgement_rules.violations}


def history(*zs_by_run: tuple[float | None, ...]) -> list[Run]:
    return [run(i, *zs) for i, zs in enumerate(zs_by_run, start=1)]


IN_CONTROL_HISTORY = history(*[(0.3, -0.4), (-0.2, 0.5), (0.6, -0.1), (-0.5, 0.2)] * 3)


# --- 1-2s ---------------------------------------------------------------------------------------


def test_one_2s_is_a_warning_and_the_run_is_accepted() -> None:
    judgement = judge_run(run(100, 2.4, 0.3), IN_CONTROL_HISTORY)
    assert judgement.status is RunStatus.ACCEPTED
    assert fired(judgement) == {("1-2s", "within_run")}
    assert judgement.warnings[0].severity is Severity.WARNING
    assert judgement.warnings[0].points[0].level == 1


def test_exactly_two_sd_is_not_beyond_two_sd() -> None:
    assert judge_run(run(100, 2.0, -2.0), IN_CONTROL_HISTORY).violations == ()


# --- 1-3s ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("z", [3.01, -3.5, 6.0])
def test_one_3s_rejects(z: float) -> None:
    judgement = judge_run(run(100, 0.1, z), IN_CONTROL_HISTORY)
    assert judgement.status is RunStatus.REJECTED
    assert ("1-3s", "within_run") in fired(judgement)
    assert judgement.first_rule is Rule.R_1_3S
    (violation,) = [v for v in judgement.violations if v.rule is Rule.R_1_3S]
    assert violation.points[0].level == 2
    assert violation.points[0].z == pytest.approx(z)


def test_three_sd_exactly_does_not_reject() -> None:
    judgement = judge_run(run(100, 3.0, 0.0), IN_CONTROL_HISTORY)
    assert judgement.status is RunStatus.ACCEPTED
    assert fired(judgement) == {("1-2s", "within_run")}


# --- 2-2s ---------------------------------------------------------------------------------------


def test_two_2s_within_a_run_across_levels() -> None:
    judgement = judge_run(run(100, 2.3, 2.6), IN_CONTROL_HISTORY)
    assert judgement.status is RunStatus.REJECTED
    assert ("2-2s", "within_run") in fired(judgement)
    (violation,) = [v for v in judgement.violations if v.rule is Rule.R_2_2S]
    assert {p.level for p in violation.points} == {1, 2}


def test_two_2s_across_runs_on_one_level() -> None:
    earlier = [*IN_CONTROL_HISTORY, run(50, -2.2, 0.4)]
    judgement = judge_run(run(100, -2.5, 0.1), earlier)
    assert judgement.status is RunStatus.REJECTED
    assert fired(judgement) >= {("2-2s", "across_runs")}
    (violation,) = [v for v in judgement.violations if v.rule is Rule.R_2_2S]
    assert [(p.run_id, p.level) for p in violation.points] == [(50, 1), (100, 1)]


def test_two_2s_does_not_fire_on_opposite_sides_or_different_levels_across_runs() -> None:
    # level 1 beyond +2 in one run, level 2 beyond +2 in the next: not the same control material
    # in consecutive runs, and not two levels of one run.
    earlier = [*IN_CONTROL_HISTORY, run(50, 2.2, 0.4)]
    judgement = judge_run(run(100, 0.2, 2.3), earlier)
    assert judgement.status is RunStatus.ACCEPTED
    assert {v.rule for v in judgement.violations} == {Rule.R_1_2S}
    # the same level beyond opposite limits in two runs is not 2-2s either
    earlier = [*IN_CONTROL_HISTORY, run(50, 2.2, 0.4)]
    judgement = judge_run(run(100, -2.3, 0.1), earlier)
    assert Rule.R_2_2S not in {v.rule for v in judgement.violations}


def test_two_2s_across_two_tests_does_not_fire() -> None:
    """Each test has its own history: sodium beyond +2 SD and then potassium beyond +2 SD on the
    same analyser are two warnings, not a 2-2s."""
    sodium = judge_all([*IN_CONTROL_HISTORY, run(100, 2.4, 0.1)])
    potassium = judge_all([*IN_CONTROL_HISTORY, run(101, 2.5, 0.2)])
    for judgements in (sodium, potassium):
        assert judgements[-1].status is RunStatus.ACCEPTED
        assert {v.rule for v in judgements[-1].violations} == {Rule.R_1_2S}


def test_two_2s_skips_a_rejected_run() -> None:
    """The rejected run is not history: the next run is compared with the last accepted one."""
    runs = [*IN_CONTROL_HISTORY, run(50, 3.5, 0.2), run(51, 2.3, 0.1)]
    judgements = judge_all(runs)
    assert judgements[-2].status is RunStatus.REJECTED
    assert judgements[-1].status is RunStatus.ACCEPTED


# --- R-4s ---------------------------------------------------------------------------------------


def test_r_4s_within_a_run() -> None:
    judgement = judge_run(run(100, 2.1, -2.2), IN_CONTROL_HISTORY)
    assert judgement.status is RunStatus.REJECTED
    assert ("R-4s", "within_run") in fired(judgement)
    (violation,) = [v for v in judgement.violations if v.rule is Rule.R_R_4S]
    assert [p.level for p in violation.points] == [1, 2]


def test_r_4s_is_never_applied_across_runs() -> None:
    """Level 1 at +2.5 SD, then level 1 at -2.5 SD in the next run (range 5 SD across runs):
    two 1-2s warnings, not R-4s, and level 1 then level 2 in two runs neither."""
    judgements = judge_all([*IN_CONTROL_HISTORY, run(50, 2.5, 0.0), run(51, -2.5, 0.0)])
    assert [j.status for j in judgements[-2:]] == [RunStatus.ACCEPTED, RunStatus.ACCEPTED]
    assert all(v.rule is Rule.R_1_2S for j in judgements[-2:] for v in j.violations)
    judgements = judge_all([*IN_CONTROL_HISTORY, run(50, 2.5, 0.0), run(51, 0.0, -2.5)])
    assert all(j.status is RunStatus.ACCEPTED for j in judgements)


def test_range_of_four_sd_without_crossing_both_limits_is_not_r_4s() -> None:
    # +2.5 and -1.6: a range of 4.1 SD, but only one control is beyond 2 SD.
    judgement = judge_run(run(100, 2.5, -1.6), IN_CONTROL_HISTORY)
    assert Rule.R_R_4S not in {v.rule for v in judgement.violations}


# --- 4-1s ---------------------------------------------------------------------------------------


def test_four_1s_on_one_level_across_runs() -> None:
    earlier = [*IN_CONTROL_HISTORY, run(50, 1.2, 0.1), run(51, 1.5, -0.3), run(52, 1.1, 0.2)]
    judgement = judge_run(run(100, 1.3, 0.0), earlier)
    assert judgement.status is RunStatus.REJECTED
    assert fired(judgement) == {("4-1s", "across_runs")}
    (violation,) = judgement.violations
    assert [p.run_id for p in violation.points] == [50, 51, 52, 100]


def test_four_1s_across_levels_and_runs() -> None:
    # two runs, both levels beyond -1 SD: four consecutive controls on the same side.
    earlier = [*IN_CONTROL_HISTORY, run(50, -1.2, -1.4)]
    judgement = judge_run(run(100, -1.1, -1.6), earlier)
    assert judgement.status is RunStatus.REJECTED
    assert fired(judgement) == {("4-1s", "across_runs_and_levels")}


def test_four_1s_needs_the_same_side() -> None:
    earlier = [*IN_CONTROL_HISTORY, run(50, 1.2, -1.4)]
    assert judge_run(run(100, 1.1, -1.6), earlier).status is RunStatus.ACCEPTED
    earlier = [*IN_CONTROL_HISTORY, run(50, 1.2, 0.1), run(51, 1.5, -0.3), run(52, 0.9, 0.2)]
    assert judge_run(run(100, 1.3, 0.0), earlier).status is RunStatus.ACCEPTED


def test_four_1s_within_a_run_of_four_levels() -> None:
    judgement = judge_run(run(100, 1.2, 1.3, 1.1, 1.9), [])
    assert fired(judgement) == {("4-1s", "within_run")}


# --- 10x ----------------------------------------------------------------------------------------


def test_ten_x_on_one_level() -> None:
    earlier = [run(i, 0.4 + i / 100, (-1) ** i * 0.5) for i in range(1, 10)]
    judgement = judge_run(run(100, 0.3, 0.2), earlier)
    assert judgement.status is RunStatus.REJECTED
    assert ("10x", "across_runs") in fired(judgement)
    (violation,) = [v for v in judgement.violations if v.scope is Scope.ACROSS_RUNS]
    assert len(violation.points) == 10


def test_ten_x_across_levels_and_runs() -> None:
    earlier = [run(i, -0.3, -0.5) for i in range(1, 5)]  # eight points below the mean
    judgement = judge_run(run(100, -0.1, -0.9), earlier)
    assert judgement.status is RunStatus.REJECTED
    assert fired(judgement) == {("10x", "across_runs_and_levels")}


def test_nine_on_one_side_is_not_ten_x() -> None:
    earlier = [run(i, 0.5, -0.5) for i in range(1, 9)]
    assert judge_run(run(100, 0.2, 0.3), earlier).status is RunStatus.ACCEPTED
    earlier = [run(1, -0.2, -0.2), *(run(i, 0.5, 0.5) for i in range(2, 5))]
    assert judge_run(run(100, 0.4, 0.4), earlier).status is RunStatus.ACCEPTED


def test_a_point_on_the_mean_breaks_ten_x() -> None:
    earlier = [run(i, 0.5, None) for i in range(1, 10)]
    assert judge_run(run(100, 0.0, None), earlier).status is RunStatus.ACCEPTED


# --- rule sets, sigma and statistics ------------------------------------------------------------


def test_a_rule_left_out_of_the_set_does_not_fire() -> None:
    rules = frozenset({Rule.R_1_2S, Rule.R_1_3S})
    judgement = judge_run(run(100, 2.3, 2.6), IN_CONTROL_HISTORY, rules=rules)
    assert judgement.status is RunStatus.ACCEPTED
    assert {v.rule for v in judgement.violations} == {Rule.R_1_2S}


@pytest.mark.parametrize(
    ("sigma", "expected"),
    [
        (None, MULTIRULE),
        (2.5, MULTIRULE),
        (4.0, {"1-2s", "1-3s", "2-2s", "R-4s", "4-1s"}),
        (5.5, {"1-2s", "1-3s", "2-2s", "R-4s"}),
        (6.0, {"1-2s", "1-3s"}),
        (9.0, {"1-2s", "1-3s"}),
    ],
)
def test_rules_chosen_by_sigma(sigma: float | None, expected: object) -> None:
    chosen = rules_for_sigma(sigma)
    assert chosen == (expected if expected is MULTIRULE else parse_rules(expected))  # type: ignore[arg-type]


def test_sigma_metric() -> None:
    # TEa 10 %, bias 2 %, CV 1.6 %: (10 - 2) / 1.6 = 5 sigma
    assert sigma_metric(tea_percent=10, bias_percent=-2, cv_percent=1.6) == pytest.approx(5.0)
    assert sigma_metric(tea_percent=10, bias_percent=0, cv_percent=0) is None


def test_unknown_rule_name_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_rules(["1-3s", "2of3-2s"])


def test_statistics_use_the_sample_sd() -> None:
    stats = lot_statistics([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert stats is not None
    assert stats.mean == pytest.approx(5.0)
    assert stats.sd == pytest.approx(2.138089935)  # n - 1; the population SD would be 2.0


def test_a_new_lot_is_established_from_its_first_twenty_points_then_fixed() -> None:
    values = [140.0 + (i % 5 - 2) * 0.8 for i in range(20)]
    assert established_target(values[:19]) is None
    first = established_target(values)
    later = established_target([*values, 150.0, 160.0])
    assert first is not None and first == later
    assert first.n == 20
    assert established_target([5.0] * 20) is None


def test_invalid_points_are_refused() -> None:
    with pytest.raises(ValueError):
        Point(level=1, value=1.0, mean=1.0, sd=0.0)
    with pytest.raises(ValueError):
        Point(level=1, value=float("nan"), mean=1.0, sd=1.0)
    with pytest.raises(ValueError):
        Run(run_id=1, points=(point(1, 0.0), point(1, 1.0)))


# --- properties ---------------------------------------------------------------------------------

zs = st.floats(min_value=-5, max_value=5, allow_nan=False)
runs_strategy = st.lists(st.tuples(zs, st.one_of(st.none(), zs)), min_size=1, max_size=40).map(
    lambda rows: [run(i, *row) for i, row in enumerate(rows, start=1)]
)


@given(runs_strategy, st.randoms())
@settings(max_examples=200, deadline=None)
def test_the_order_of_levels_in_a_run_does_not_matter(runs: list[Run], rnd: random.Random) -> None:
    shuffled = [
        Run(run_id=r.run_id, points=tuple(rnd.sample(r.points, len(r.points)))) for r in runs
    ]
    assert judge_all(runs) == judge_all(shuffled)


@given(runs_strategy)
@settings(max_examples=200, deadline=None)
def test_judging_one_run_at_a_time_equals_judging_all(runs: list[Run]) -> None:
    """What the service does (judge the new run against the accepted runs stored before it, at
    most the last few) gives the same decisions as judging the whole history at once."""
    accepted: list[Run] = []
    one_by_one = []
    for current in runs:
        judgement = judge_run(current, accepted)
        one_by_one.append(judgement)
        if judgement.status is RunStatus.ACCEPTED:
            accepted.append(current)
    assert one_by_one == judge_all(runs)


@given(runs_strategy)
@settings(max_examples=200, deadline=None)
def test_every_decision_names_points_of_this_run_and_rejections_match_the_status(
    runs: list[Run],
) -> None:
    ids = {r.run_id for r in runs}
    for current, judgement in zip(runs, judge_all(runs), strict=True):
        assert (judgement.status is RunStatus.REJECTED) == bool(judgement.rejections)
        for violation in judgement.violations:
            assert violation.points, violation
            assert any(p.run_id == current.run_id for p in violation.points)
            assert {p.run_id for p in violation.points} <= ids
            if violation.rule is Rule.R_R_4S:
                assert {p.run_id for p in violation.points} == {current.run_id}


@given(runs_strategy, st.floats(min_value=-0.99, max_value=0.99))
@settings(max_examples=200, deadline=None)
def test_a_run_within_one_sd_is_accepted_unless_a_trend_rule_fires(
    runs: list[Run], z: float
) -> None:
    judgement = judge_run(run(999, z, z / 2), runs)
    assert {v.rule for v in judgement.rejections} <= {Rule.R_10X}


@given(st.lists(st.floats(min_value=50, max_value=200), min_size=2, max_size=60))
def test_statistics_ignore_nothing_they_are_given(values: list[float]) -> None:
    stats = lot_statistics(values)
    assert stats is not None and stats.n == len(values)
    assert min(values) - 1e-9 <= stats.mean <= max(values) + 1e-9
