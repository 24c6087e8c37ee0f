"""Judge one result: every hold reason, the flag, and whether it may be released unseen.

The steps follow the order of CLSI AUTO10-A/AUTO15 (a result passes preconditions, analyser
messages, measuring range, serum indices, plausibility, delta, the autoverification range and
critical limits). Unlike a rule engine that stops at the first failed rule, every step runs and
every reason is returned, so the reviewer sees them all and replay can count them.

Pure: a function of the result, its context and the rule set. It never raises for clinical
content; a value it cannot judge is held with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from lab.rules.delta import assess_delta
from lab.rules.intervals import flag_for, interval_for
from lab.rules.model import (
    CodedComment,
    DeltaFinding,
    Hold,
    HoldCode,
    Judgement,
    JudgementContext,
    ResultToJudge,
    SerumIndices,
)
from lab.rules.ruleset import FlagAction, IndexLimits, RuleSet, TestRules

_INDEX_NAMES = {"h": "haemolysis (H)", "i": "icterus (I)", "l": "lipaemia (L)"}


def judge(subject: ResultToJudge, context: JudgementContext, ruleset: RuleSet) -> Judgement:
    rules = ruleset.for_test(subject.test_code)
    holds: list[Hold] = []
    comments: list[CodedComment] = []
    critical = False
    rerun = False

    # Step 0: preconditions.
    if context.specimen_rejected:
        holds.append(
            Hold(code=HoldCode.RULE, text="the specimen is rejected", key="specimen_rejected")
        )
    if context.qc_locked:
        rule = f" ({context.qc_rule})" if context.qc_rule else ""
        analyser = subject.instrument or "its analyser"
        holds.append(
            Hold(
                code=HoldCode.QC,
                text=f"{subject.test_code} is locked by QC on {analyser}{rule}",
                key="qc_locked",
                params={
                    "test": subject.test_code,
                    "analyser": subject.instrument,
                    "rule": context.qc_rule or "",
                },
            )
        )
    if rules is None or not rules.autoverify:
        holds.append(
            Hold(
                code=HoldCode.RULE,
                text=f"{subject.test_code} is not released without a person in rule set "
                f"v{ruleset.version}",
                key="not_enabled",
                params={"test": subject.test_code, "version": str(ruleset.version)},
            )
        )

    # Step 2: analyser messages (R-7 and vendor flags), mapped per analyser profile.
    if subject.instrument_flags:
        mapping = ruleset.flags_for(subject.flag_profile)
        held_flags: list[str] = []
        for sent in _clean(subject.instrument_flags):
            action = mapping.action(sent)
            if action is FlagAction.CRITICAL:
                critical = True
                holds.append(
                    Hold(
                        code=HoldCode.CRITICAL,
                        text=f"the analyser flagged it critical ({sent})",
                        key="analyser_critical",
                        params={"flag": sent},
                    )
                )
            elif action is FlagAction.HOLD:
                held_flags.append(sent)
        if held_flags:
            holds.append(
                Hold(
                    code=HoldCode.INSTRUMENT_FLAG,
                    text=f"analyser flag {', '.join(held_flags)}",
                    key="analyser_flag",
                    params={"flags": ", ".join(held_flags)},
                )
            )

    if subject.value is None:
        holds.append(
            Hold(code=HoldCode.RULE, text="a text result is not released unseen", key="text_result")
        )
        return _judgement(ruleset, holds, comments, critical=critical, rerun=rerun, flag=None)

    value = subject.value
    # Step 3: measuring range: a value the analyser could only bound ("<0.6", ">350").
    if subject.comparator is not None:
        below = subject.comparator.startswith("<")
        releases = rules is not None and (
            rules.below_comparator_releases if below else rules.above_comparator_releases
        )
        if not releases:
            holds.append(
                Hold(
                    code=HoldCode.RULE,
                    text=f"reported as {subject.comparator}{value}: outside the measuring range",
                    key="measuring_range",
                    params={"value": f"{subject.comparator}{value}"},
                )
            )

    # Step 4: serum indices.
    if rules is not None and rules.indices is not None and subject.indices is not None:
        comment = _interference(rules.indices, subject.indices, subject.test_code, holds)
        if comment is not None:
            comments.append(comment)

    # Step 5: plausibility: a value no living patient can have is the specimen's or the
    # analyser's fault: shown as implausible (not LL/HH) and measured again.
    implausible = rules is not None and _implausible(rules, value)
    if implausible:
        rerun = True
        holds.append(
            Hold(
                code=HoldCode.PLAUSIBILITY,
                text=f"{value} {subject.unit or ''} is not a value a living patient can have "
                f"({_limits_text(rules)}); measure again".replace("  ", " "),
                key="implausible",
                params={
                    "value": str(value),
                    "unit": subject.unit or "",
                    "low": _text(rules.plausible_low if rules else None),
                    "high": _text(rules.plausible_high if rules else None),
                },
            )
        )

    # Step 7: delta check against the previous result measured before this one.
    delta = None
    if rules is not None and rules.delta is not None and not implausible:
        delta = assess_delta(rules.delta, subject, context.previous)
        if delta is not None and delta.beyond_limit:
            holds.append(
                Hold(
                    code=HoldCode.DELTA,
                    text=f"changed from {delta.previous} to {value} (limit {delta.limit_text})",
                    key="delta",
                    params={
                        "previous": str(delta.previous),
                        "value": str(value),
                        "limit": delta.limit,
                        "window": delta.window,
                        "window_unit": delta.window_unit,
                    },
                )
            )

    # Step 8: reference interval for age and sex at collection, and the autoverification range.
    interval = interval_for(context.test.reference_intervals, context.sex, context.age_days)
    if interval is None:
        holds.append(
            Hold(
                code=HoldCode.NO_REFERENCE_INTERVAL,
                text=_no_interval_text(context),
                **_no_interval_key(context),
            )
        )
    if rules is not None and not implausible:
        outside_low = rules.autoverify_low is not None and value < rules.autoverify_low
        outside_high = rules.autoverify_high is not None and value > rules.autoverify_high
        if outside_low or outside_high:
            holds.append(
                Hold(
                    code=HoldCode.RULE,
                    text=f"outside the autoverification range "
                    f"{rules.autoverify_low or ''}-{rules.autoverify_high or ''}",
                    key="autoverify_range",
                    params={
                        "low": _text(rules.autoverify_low),
                        "high": _text(rules.autoverify_high),
                    },
                )
            )

    # Step 9: critical limits (the lab's own; the analyser's were taken in step 2).
    flag: str | None = None
    if not implausible:
        flag = flag_for(
            value,
            subject.comparator,
            low=interval.low if interval else None,
            high=interval.high if interval else None,
            critical_low=context.test.critical_low,
            critical_high=context.test.critical_high,
        )
        if flag in ("LL", "HH"):
            critical = True
            limit = context.test.critical_low if flag == "LL" else context.test.critical_high
            holds.append(
                Hold(
                    code=HoldCode.CRITICAL,
                    text=f"{'below' if flag == 'LL' else 'above'} the critical limit {limit}",
                    key="critical_below" if flag == "LL" else "critical_above",
                    params={"limit": _text(limit)},
                )
            )
    if critical and rules is not None and rules.critical_autoverify:
        # The lab chose to release critical results while the call is made: only the critical
        # hold goes; the call itself is still asked for.
        holds = [hold for hold in holds if hold.code is not HoldCode.CRITICAL]
    return _judgement(
        ruleset,
        holds,
        comments,
        critical=critical,
        rerun=rerun,
        flag=flag,
        implausible=implausible,
        reference=(interval.low, interval.high) if interval else (None, None),
        delta=delta,
    )


def _judgement(
    ruleset: RuleSet,
    holds: list[Hold],
    comments: list[CodedComment],
    *,
    critical: bool,
    rerun: bool,
    flag: str | None,
    implausible: bool = False,
    reference: tuple[Decimal | None, Decimal | None] = (None, None),
    delta: DeltaFinding | None = None,
) -> Judgement:
    unique: list[Hold] = []
    for hold in holds:
        if hold not in unique:
            unique.append(hold)
    return Judgement(
        flag=flag,
        implausible=implausible,
        critical=critical,
        rerun=rerun,
        holds=tuple(unique),
        autoverify=not unique and not implausible,
        ruleset_version=ruleset.version,
        reference_low=reference[0],
        reference_high=reference[1],
        delta=delta,
        comments=tuple(comments),
    )


def _clean(flags: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for flag in flags:
        for part in flag.replace(",", " ").split():
            if part and part not in seen:
                seen.append(part)
    return seen


def _implausible(rules: TestRules, value: Decimal) -> bool:
    return (rules.plausible_low is not None and value < rules.plausible_low) or (
        rules.plausible_high is not None and value > rules.plausible_high
    )


def _limits_text(rules: TestRules | None) -> str:
    if rules is None:
        return ""
    low = rules.plausible_low
    high = rules.plausible_high
    if low is not None and high is not None:
        return f"plausible {low}-{high}"
    return f"plausible {'>= ' + str(low) if low is not None else '<= ' + str(high)}"


def _interference(
    limits: IndexLimits, indices: SerumIndices, test_code: str, holds: list[Hold]
) -> CodedComment | None:
    over: list[str] = []
    params = {"test": test_code}
    for key in ("h", "i", "l"):
        limit = getattr(limits, key)
        measured = getattr(indices, key)
        if limit is not None and measured is not None and measured > limit:
            over.append(f"{_INDEX_NAMES[key]} index {measured} > {limit}")
            params[key] = str(measured)
            params[f"{key}_limit"] = str(limit)
    if not over:
        return None
    text = "; ".join(over)
    holds.append(
        Hold(
            code=HoldCode.INTERFERENCE,
            text=f"{test_code}: {text}",
            key="interference",
            params=params,
        )
    )
    code = limits.comment or "INTERFERENCE"
    return CodedComment(code=code, text=f"Interference: {text}. The result may be falsely altered.")


def _no_interval_text(context: JudgementContext) -> str:
    if context.age_days is None:
        return "no reference interval: the patient's age at collection is unknown"
    if context.sex not in ("F", "M"):
        return (
            f"no reference interval for sex {context.sex or 'unknown'} at "
            f"{context.age_days} days of age"
        )
    return f"no reference interval for sex {context.sex} at {context.age_days} days of age"


def _no_interval_key(context: JudgementContext) -> dict[str, Any]:
    if context.age_days is None:
        return {"key": "no_interval_age"}
    return {
        "key": "no_interval_for",
        "params": {"sex": context.sex or "unknown", "days": str(context.age_days)},
    }


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value)
