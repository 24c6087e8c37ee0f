"""Replay: what a candidate rule set would have decided, against what people decided (pure).

The caller (lab.rulesets.replay) reads stored results in a fixed order and gives, for each, the
candidate's `Judgement` and the `HumanDecision` taken from the result's history. This module
compares and counts; it reads no clock and no database, so the same history gives the same
figures every time.

Disagreements, worst first (Jin et al., BMC Med Inform Decis Mak 2021;21:174 validated rule
sets by logging every human-machine disagreement):
- `released_but_corrected`: the rule set would have released a result a person later corrected;
- `released_but_cancelled`: ... a result a person cancelled;
- `released_but_not_verified`: ... a result people have not (yet) verified;
- `held_but_verified_unchanged`: the rule set would have held a result a person verified as it was
  (costs work, not safety).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from lab.rules.model import HoldCode, Judgement


class Disagreement(StrEnum):
    RELEASED_BUT_CORRECTED = "released_but_corrected"
    RELEASED_BUT_CANCELLED = "released_but_cancelled"
    RELEASED_BUT_NOT_VERIFIED = "released_but_not_verified"
    HELD_BUT_VERIFIED_UNCHANGED = "held_but_verified_unchanged"


SERIOUS = frozenset(
    {
        Disagreement.RELEASED_BUT_CORRECTED,
        Disagreement.RELEASED_BUT_CANCELLED,
        Disagreement.RELEASED_BUT_NOT_VERIFIED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanDecision:
    """What became of a stored result, from its history."""

    verified: bool  # verified (by a person or by a rule set) at some point
    corrected: bool  # a later version corrected its value
    cancelled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayCase:
    result_id: int
    test_code: str
    value_text: str
    judgement: Judgement
    human: HumanDecision


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    result_id: int
    test_code: str
    value_text: str
    disagreement: Disagreement
    holds: tuple[str, ...]  # hold codes of the candidate


def disagreement(judgement: Judgement, human: HumanDecision) -> Disagreement | None:
    if judgement.autoverify:
        if human.corrected:
            return Disagreement.RELEASED_BUT_CORRECTED
        if human.cancelled:
            return Disagreement.RELEASED_BUT_CANCELLED
        if not human.verified:
            return Disagreement.RELEASED_BUT_NOT_VERIFIED
        return None
    if human.verified and not human.corrected and not human.cancelled:
        return Disagreement.HELD_BUT_VERIFIED_UNCHANGED
    return None


@dataclass(slots=True)
class ReplaySummary:
    """Running figures of one replay; `add` each case in the caller's fixed order."""

    version: int
    judged: int = 0
    would_release: int = 0
    holds: Counter[str] = field(default_factory=Counter)
    disagreements: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    def add(self, case: ReplayCase) -> None:
        self.judged += 1
        if case.judgement.autoverify:
            self.would_release += 1
        for code in {hold.code for hold in case.judgement.holds}:
            self.holds[HoldCode(code).value] += 1
        found = disagreement(case.judgement, case.human)
        if found is not None:
            self.disagreements[found.value] += 1
            self.findings.append(
                Finding(
                    result_id=case.result_id,
                    test_code=case.test_code,
                    value_text=case.value_text,
                    disagreement=found,
                    holds=tuple(hold.code.value for hold in case.judgement.holds),
                )
            )

    @property
    def release_rate(self) -> float:
        return self.would_release / self.judged if self.judged else 0.0

    def report_lines(self, *, limit: int | None = None) -> list[str]:
        """The figures as printed by `lab rules replay` (no times, no patient data)."""
        lines = [
            f"rule set version: {self.version}",
            f"results judged: {self.judged}",
            f"would be released without a person: {self.would_release} "
            f"({self.release_rate * 100:.1f} %)",
        ]
        for code, count in sorted(self.holds.items()):
            lines.append(f"held for {code}: {count}")
        for kind in Disagreement:
            lines.append(f"disagreement {kind.value}: {self.disagreements.get(kind.value, 0)}")
        ordered = sorted(self.findings, key=lambda f: (f.disagreement not in SERIOUS, f.result_id))
        for finding in ordered[:limit] if limit is not None else ordered:
            holds = ",".join(finding.holds) or "-"
            lines.append(
                f"  result {finding.result_id} {finding.test_code} {finding.value_text}: "
                f"{finding.disagreement.value} (holds: {holds})"
            )
        return lines
