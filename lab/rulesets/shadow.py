"""What a rule set version in shadow decided, beside what the active version and people did.

The recording path keeps the shadow version's decision for every result it judges
(`rule_shadow_decision`: the result, the version of the result it judged, release or hold and
the hold codes). This module reads them back, each with the active version's decision on the same
result version (autoverified or held, and why) and what became of the result since (verified by a
person, corrected, cancelled, still waiting). Only result ids, statuses and hold codes: no values,
no patient data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.orm import Session

from lab.rulesets import service
from lab.tables.rulesets import RuleKind


class Disagreement(StrEnum):
    """Where the shadow version and the active one (or the people after it) part, the serious
    ones first."""

    RELEASED_BUT_CORRECTED = "shadow_released_but_corrected"  # a person later corrected it
    RELEASED_BUT_CANCELLED = "shadow_released_but_cancelled"
    RELEASED_BUT_HELD = "shadow_released_active_held"
    HELD_BUT_RELEASED = "shadow_held_active_released"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowRow:
    result_id: int
    result_version: int
    decided_at: str
    shadow_release: bool
    shadow_holds: tuple[str, ...]
    active_release: bool
    active_holds: tuple[str, ...]
    active_version: int | None
    status_now: str
    disagreement: Disagreement | None


@dataclass(slots=True)
class ShadowReport:
    kind: str
    version: int
    state: str
    decided: int = 0
    shadow_released: int = 0
    active_released: int = 0
    agree: int = 0
    disagreements: Counter[str] = field(default_factory=Counter)
    rows: list[ShadowRow] = field(default_factory=list)  # the disagreements first, newest first

    def report_lines(self) -> list[str]:
        if not self.decided:
            return [f"shadow decisions of {self.kind} v{self.version}: none recorded"]
        lines = [
            f"shadow decisions of {self.kind} v{self.version} ({self.state}): {self.decided}",
            f"  the shadow version would have released {self.shadow_released}; "
            f"the active version released {self.active_released}",
            f"  agree {self.agree}; disagree {self.decided - self.agree}",
        ]
        for kind in Disagreement:
            if self.disagreements[kind.value]:
                lines.append(f"  {kind.value}: {self.disagreements[kind.value]}")
        return lines


_QUERY = text(
    """
    SELECT d.result_id, d.result_version, d.decided_at, d.autoverify, d.holds,
           v.holds AS active_holds, v.ruleset_version,
           EXISTS (SELECT 1 FROM result_version w
                    WHERE w.result_id = d.result_id AND w.version = d.result_version + 1
                      AND w.status = 'verified' AND w.author LIKE 'autoverification v%%')
               AS active_release,
           r.status AS status_now,
           EXISTS (SELECT 1 FROM result_version c
                    WHERE c.result_id = d.result_id AND c.status = 'corrected') AS corrected
      FROM rule_shadow_decision d
      JOIN result r ON r.id = d.result_id
      LEFT JOIN result_version v ON v.result_id = d.result_id AND v.version = d.result_version
     WHERE d.rule_set_version_id = :version_id
     ORDER BY d.id DESC
    """
)


def _disagreement(
    shadow: bool, active: bool, status_now: str, corrected: bool
) -> Disagreement | None:
    if shadow and corrected:
        return Disagreement.RELEASED_BUT_CORRECTED
    if shadow and status_now == "cancelled":
        return Disagreement.RELEASED_BUT_CANCELLED
    if shadow and not active:
        return Disagreement.RELEASED_BUT_HELD
    if active and not shadow:
        return Disagreement.HELD_BUT_RELEASED
    return None


def shadow_report(session: Session, *, version: int, limit: int = 200) -> ShadowReport:
    """Every decision the autoverification `version` made in shadow, compared; `limit` rows are
    listed (the disagreements first), all are counted."""
    row = service.get(session, kind=RuleKind.AUTOVERIFICATION.value, version=version)
    report = ShadowReport(kind=row.kind, version=row.version, state=row.state)
    found: list[ShadowRow] = []
    for line in session.execute(_QUERY, {"version_id": row.id}):
        shadow_release, active_release = bool(line.autoverify), bool(line.active_release)
        disagreement = _disagreement(
            shadow_release, active_release, line.status_now, bool(line.corrected)
        )
        report.decided += 1
        report.shadow_released += shadow_release
        report.active_released += active_release
        if disagreement is None:
            report.agree += 1
        else:
            report.disagreements[disagreement.value] += 1
        found.append(
            ShadowRow(
                result_id=line.result_id,
                result_version=line.result_version,
                decided_at=line.decided_at.isoformat(),
                shadow_release=shadow_release,
                shadow_holds=tuple(h.get("code", "") for h in line.holds or []),
                active_release=active_release,
                active_holds=tuple(h.get("code", "") for h in line.active_holds or []),
                active_version=line.ruleset_version,
                status_now=line.status_now,
                disagreement=disagreement,
            )
        )
    order = list(Disagreement)
    found.sort(key=lambda r: order.index(r.disagreement) if r.disagreement else len(order))
    report.rows = found[:limit]
    return report
