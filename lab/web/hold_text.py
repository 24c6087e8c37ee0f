"""Why a result is held, or an analyser's result is unmatched, in the page's language.

The services store each reason as a stable key with its parameters beside the English sentence
of the API and the audit trail (`lab.rules.model.Hold`: `key`, `params`; the unmatched queue's
`reason_code`, `reason_params`). The pages translate the key through the message catalogs
(`hold.text.<key>`, `unmatched.why.<code>`, `error.<code>`) with the figures in the page's
number format; the sentence itself is never read back. A reason without a key (one a newer
rule wrote before the catalogs knew it) is shown as its sentence on an English page only; a
bokmål page shows the hold's code name alone rather than English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lab.web.i18n import Language, has_text, translate
from lab.web.numbers import number

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _numbers(text: str, language: Language) -> str:
    """Every decimal number in a figure (`<0.6`, `±1.0`, `RCV ±12.5 %`) in the page's format."""

    def shown(found: re.Match[str]) -> str:
        try:
            return number(Decimal(found.group(0)), language)
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            return found.group(0)

    return _NUMBER.sub(shown, text)


def delta_limit(delta: Mapping[str, Any], language: Language) -> str:
    """A delta check's limit (`±1,0 innen 48 t`) from the judgement's parts; a judgement made
    before the parts were kept shows its limit with the page's number format."""
    window = str(delta.get("window") or "")
    if not window:
        return _numbers(str(delta.get("limit") or ""), language)
    key = "hold.window_days" if delta.get("window_unit") == "days" else "hold.window_hours"
    return translate(
        language,
        key,
        limit=_numbers(str(delta.get("allowed") or ""), language),
        n=_numbers(window, language),
    )


def _limits(params: Mapping[str, str], language: Language) -> str:
    """Plausibility limits: `80–200`, `≥ 1,5`, `≤ 300`."""
    low, high = params.get("low", ""), params.get("high", "")
    if low and high:
        return f"{_numbers(low, language)}–{_numbers(high, language)}"
    if low:
        return f"≥ {_numbers(low, language)}"
    return f"≤ {_numbers(high, language)}" if high else ""


_INDICES = (("h", "haemolysis"), ("i", "icterus"), ("l", "lipaemia"))


def _interference(params: Mapping[str, str], language: Language) -> dict[str, object]:
    parts = [
        translate(
            language,
            f"hold.index.{name}",
            measured=_numbers(params[key], language),
            limit=_numbers(params.get(f"{key}_limit", ""), language),
        )
        for key, name in _INDICES
        if key in params
    ]
    return {"indices": "; ".join(parts)}


def _sex(params: Mapping[str, str], language: Language) -> dict[str, object]:
    sex = params.get("sex", "")
    shown = translate(language, f"sex.{sex}") if has_text(language, f"sex.{sex}") else sex
    return {"sex": shown, "days": params.get("days", "")}


def _qc(params: Mapping[str, str], language: Language) -> dict[str, object]:
    analyser = params.get("analyser") or translate(language, "hold.its_analyser")
    rule = params.get("rule", "")
    return {
        "test": params.get("test", ""),
        "analyser": analyser,
        "rule": f" ({rule})" if rule else "",
    }


def _delta(params: Mapping[str, str], language: Language) -> dict[str, object]:
    return {
        "previous": _numbers(params.get("previous", ""), language),
        "value": _numbers(params.get("value", ""), language),
        "limit": delta_limit(
            {
                "allowed": params.get("limit", ""),
                "window": params.get("window", ""),
                "window_unit": params.get("window_unit", ""),
            },
            language,
        ),
    }


_Shown = Callable[[Mapping[str, str], Language], Mapping[str, object]]

# Keys whose parameters need more than figures in the page's number format.
_SHOWN: dict[str, _Shown] = {
    "qc_locked": _qc,
    "implausible": lambda p, language: {
        "value": _numbers(p.get("value", ""), language),
        "limits": _limits(p, language),
    },
    "delta": _delta,
    "no_interval_for": _sex,
    "interference": _interference,
}
# Parameters that are names, never figures (a test code such as FT4 has a digit in it).
_NAMES = frozenset({"test", "tests", "flag", "flags", "analyser", "rule", "code"})

# Every key the services write (lab/rules/judge.py, lab/results/judging.py, recording.py).
HOLD_KEYS = frozenset(
    {
        "specimen_rejected",
        "qc_locked",
        "not_enabled",
        "analyser_critical",
        "analyser_flag",
        "text_result",
        "measuring_range",
        "implausible",
        "delta",
        "no_interval_age",
        "no_interval_for",
        "no_interval",
        "autoverify_range",
        "critical_below",
        "critical_above",
        "critical",
        "interference",
        "waits_for",
        "recalculated",
        "choose",
    }
)


def hold_detail(hold: Mapping[str, Any], language: Language) -> str:
    """A hold (`{"code", "text", "key", "params"}`) said in `language`; "" on a bokmål page
    when the hold has no key the catalogs know."""
    key = str(hold.get("key") or "")
    if not key or not has_text(language, f"hold.text.{key}"):
        return str(hold.get("text") or "") if language == "en" else ""
    params: Mapping[str, str] = hold.get("params") or {}
    special = _SHOWN.get(key)
    if special is not None:
        shown = special(params, language)
    else:
        shown = {
            name: value if name in _NAMES else _numbers(str(value), language)
            for name, value in params.items()
        }
    return translate(language, f"hold.text.{key}", **shown)


_ORIGINS = ("rerun", "dilution", "repeat")
_CHOSEN = re.compile(r"^measurement (?P<n>\d+) \((?P<origin>\w+)\) chosen$")
_RECALCULATED = re.compile(r"^recalculated: (?P<test>\S+) corrected(?:; (?P<why>.+))?$")


def version_reason(reason: str, language: Language) -> str:
    """Why a version was made, in `language` when the service wrote it; a person's own words
    (a correction's reason) as they were typed."""
    if reason in _ORIGINS:
        return translate(language, f"origin.{reason}")
    found = _CHOSEN.match(reason)
    if found is not None:
        origin = found["origin"]
        shown = (
            translate(language, f"origin.{origin}") if origin in (*_ORIGINS, "first") else origin
        )
        return translate(language, "version.chosen", n=found["n"], origin=shown)
    found = _RECALCULATED.match(reason)
    if found is not None:
        return translate(language, "version.recalculated", test=found["test"])
    return reason


_AUTOVERIFIER = re.compile(r"^autoverification v(?P<version>\d+)$")


def who(name: str, language: Language) -> str:
    """Who made a change: a person's user name as it is; the rule set that released a result
    (`autoverification v3`, `lab.results.recording.autoverifier`) in the page's words."""
    found = _AUTOVERIFIER.match(name or "")
    if found is not None:
        return translate(language, "who.autoverification", version=found["version"])
    return name or ""


# Why an analyser's result is in the unmatched queue: its code and parameters as the analyser
# side (instruments.messages) or the result path (lab.results, `error.<code>`) wrote them.
UNMATCHED_CODES = frozenset(
    {
        "not_mapped",
        "no_specimen",
        "status",
        "unreadable",
        "clock",
        "not_stored",
        "unit_unknown",
        "unit_not_convertible",
        "value_not_convertible",
    }
)
