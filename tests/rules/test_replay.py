"""Replay figures: the same cases give the same figures; the counts add up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lab.rules.model import Hold, HoldCode, Judgement
from lab.rules.replay import (
    SERIOUS,
    Disagreement,
    HumanDecision,
    ReplayCase,
    ReplaySummary,
    disagreement,
)


def _judgement(hold_codes: list[HoldCode]) -> Judgement:
    holds = tuple(Hold(code=code, text=code.value) for code in dict.fromkeys(hold_codes))
    return Judgement(
        flag=None,
        implausible=HoldCode.PLAUSIBILITY in hold_codes,
        critical=HoldCode.CRITICAL in hold_codes,
        rerun=False,
        holds=holds,
        autoverify=not holds,
        ruleset_version=2,
    )


_cases = st.lists(
    st.tuples(
        st.lists(st.sampled_from(list(HoldCode)), max_size=3),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    max_size=60,
)


def _summary(raw: list[tuple[list[HoldCode], bool, bool, bool]]) -> ReplaySummary:
    summary = ReplaySummary(version=2)
    for number, (codes, verified, corrected, cancelled) in enumerate(raw, start=1):
        summary.add(
            ReplayCase(
                result_id=number,
                test_code="NA",
                value_text="140",
                judgement=_judgement(codes),
                human=HumanDecision(verified=verified, corrected=corrected, cancelled=cancelled),
            )
        )
    return summary


@given(_cases)
def test_same_cases_same_figures(raw: list[tuple[list[HoldCode], bool, bool, bool]]) -> None:
    assert _summary(raw).report_lines() == _summary(raw).report_lines()


@given(_cases)
def test_counts_add_up(raw: list[tuple[list[HoldCode], bool, bool, bool]]) -> None:
    summary = _summary(raw)
    assert summary.judged == len(raw)
    assert summary.would_release == sum(1 for codes, *_ in raw if not codes)
    assert sum(summary.disagreements.values()) == len(summary.findings)
    for finding in summary.findings:
        if finding.disagreement in SERIOUS:
            assert finding.holds == ()  # only a released result can be a serious disagreement


def test_the_four_disagreements() -> None:
    release, hold = _judgement([]), _judgement([HoldCode.DELTA])
    corrected = HumanDecision(verified=True, corrected=True, cancelled=False)
    waiting = HumanDecision(verified=False, corrected=False, cancelled=False)
    fine = HumanDecision(verified=True, corrected=False, cancelled=False)
    assert disagreement(release, corrected) is Disagreement.RELEASED_BUT_CORRECTED
    assert disagreement(release, waiting) is Disagreement.RELEASED_BUT_NOT_VERIFIED
    assert disagreement(release, fine) is None
    assert disagreement(hold, fine) is Disagreement.HELD_BUT_VERIFIED_UNCHANGED
    assert disagreement(hold, corrected) is None
