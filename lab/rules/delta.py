"""Delta check: has the result changed from the patient's previous one more than chance allows?

The previous result is the one of the same test *measured* before this one (not the last one
verified: a result waiting for review is still the patient's latest state), within the test's
window. Limits (CLSI EP33):
- `rcv`: RCV = sqrt(2) * z * sqrt(CVa^2 + CVi^2) (Fraser, Harris), symmetric, in per cent;
- `rcv_lognormal`: for tests with large variation (CRP), Fokkema et al., Clin Chem
  2006;52:1457-8: sigma = sqrt(ln(CVt^2 + 1)), rise exp(+z*sqrt(2)*sigma) - 1,
  fall exp(-z*sqrt(2)*sigma) - 1;
- `absolute`: a change in the test's unit (KDIGO 2012: creatinine +26.5 umol/L within 48 h).
A value reported with a comparator ("<5") gets no delta: its size is not known.
"""

from __future__ import annotations

from decimal import Decimal

from lab.rules.model import DeltaFinding, PreviousResult, ResultToJudge
from lab.rules.ruleset import DeltaMethod, DeltaRule


def assess_delta(
    rule: DeltaRule, subject: ResultToJudge, previous: PreviousResult | None
) -> DeltaFinding | None:
    if previous is None or subject.value is None:
        return None
    if subject.comparator is not None or previous.comparator is not None:
        return None
    elapsed = subject.measured_at - previous.measured_at
    if elapsed.total_seconds() <= 0 or elapsed > rule.window:
        return None  # only a result measured before this one, and within the window, counts
    value = subject.value
    change = value - previous.value
    relative = float(change / previous.value) if previous.value != 0 else None
    if rule.method is DeltaMethod.ABSOLUTE:
        allowed = rule.change if rule.change is not None else Decimal(0)
        beyond = abs(change) > allowed
        limit = f"±{allowed}"
    else:
        fall, rise = rule.limits()
        # A previous value of 0 has no relative change: any change is beyond the limit.
        beyond = change != 0 if relative is None else (relative > rise or relative < fall)
        if rule.method is DeltaMethod.RCV:
            limit = f"RCV ±{rise * 100:.1f} %"
        else:
            limit = f"RCV +{rise * 100:.0f} % / {fall * 100:.0f} %"
    window, unit = _window(rule)
    shown = f"log-normal {limit}" if rule.method is DeltaMethod.RCV_LOGNORMAL else limit
    if rule.min_change is not None and abs(change) <= rule.min_change:
        beyond = False
    return DeltaFinding(
        previous=previous.value,
        previous_at=previous.measured_at,
        change=change,
        relative_change=relative,
        limit_text=f"{shown} within {window} {unit}",
        beyond_limit=beyond,
        limit=limit,
        window=window,
        window_unit=unit,
    )


def _window(rule: DeltaRule) -> tuple[str, str]:
    hours = rule.window.total_seconds() / 3600
    return (f"{hours / 24:g}", "days") if hours >= 48 and hours % 24 == 0 else (f"{hours:g}", "h")
