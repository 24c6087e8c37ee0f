"""Why a result is held, in the page's language.

The rules write each hold as a code and a short English sentence with the rule's figures in it
(`above the critical limit 6.2`); the sentence is also what the API and the audit trail keep.
The pages show the code's name and the sentence said again in the reader's language with the
same figures (`hold.text.<name>` in the catalogs, numbers with the page's decimal sign). A
sentence this module does not know is shown as it is only on an English page; a bokmål page
shows the code's name alone rather than English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

from lab.web.i18n import Language, has_text, translate
from lab.web.numbers import number

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _numbers(text: str, language: Language) -> str:
    """Every decimal number in `text` with the page's decimal sign and minus."""

    def shown(found: re.Match[str]) -> str:
        try:
            return number(Decimal(found.group(0)), language)
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            return found.group(0)

    return _NUMBER.sub(shown, text)


def delta_limit(text: str, language: Language) -> str:
    """A delta check's limit (`±20 within 48 h`, `RCV ±12.5 % within 7 days`)."""
    found = re.fullmatch(r"(?P<limit>.+?) within (?P<n>[\d.]+) (?P<unit>h|days)", text)
    if found is None:
        return _numbers(text, language)
    limit = _numbers(found["limit"], language).replace("log-normal ", "")
    key = "hold.window_days" if found["unit"] == "days" else "hold.window_hours"
    return translate(language, key, limit=limit, n=_numbers(found["n"], language))


_INDEX = re.compile(
    r"(?P<name>haemolysis|icterus|lipaemia) \((?P<letter>[HIL])\) index "
    r"(?P<measured>[\d.]+) > (?P<limit>[\d.]+)"
)


def _indices(text: str, language: Language) -> str:
    parts = [
        translate(
            language,
            f"hold.index.{found['name']}",
            measured=_numbers(found["measured"], language),
            limit=_numbers(found["limit"], language),
        )
        for found in _INDEX.finditer(text)
    ]
    return "; ".join(parts)


def _limits(text: str, language: Language) -> str:
    """Plausibility limits: `80-200`, `>= 1.5`, `<= 300`."""
    found = re.fullmatch(r"(?P<low>[\d.]+)-(?P<high>[\d.]+)", text)
    if found is not None:
        return f"{_numbers(found['low'], language)}–{_numbers(found['high'], language)}"
    return _numbers(text, language).replace(">= ", "≥ ").replace("<= ", "≤ ")


_Params = Callable[[re.Match[str], Language], Mapping[str, object]]


def _plain(found: re.Match[str], language: Language) -> Mapping[str, object]:
    return {name: _numbers(value or "", language) for name, value in found.groupdict().items()}


# (pattern of the rules' sentence, catalog key, how its figures are shown)
_SENTENCES: tuple[tuple[re.Pattern[str], str, _Params], ...] = (
    (re.compile(r"^the specimen is rejected$"), "specimen_rejected", _plain),
    (
        re.compile(r"^(?P<test>\S+) is locked by QC on (?P<analyser>.+?)(?: \((?P<rule>.+)\))?$"),
        "qc_locked",
        lambda found, language: {
            "test": found["test"],
            "analyser": found["analyser"],
            "rule": f" ({found['rule']})" if found["rule"] else "",
        },
    ),
    (
        re.compile(r"^(?P<test>\S+) is not released without a person in rule set v(?P<v>\d+)$"),
        "not_enabled",
        lambda found, language: {"test": found["test"], "version": found["v"]},
    ),
    (
        re.compile(r"^the analyser flagged it critical \((?P<flag>.+)\)$"),
        "analyser_critical",
        lambda found, language: {"flag": found["flag"]},
    ),
    (
        re.compile(r"^analyser flag (?P<flags>.+)$"),
        "analyser_flag",
        lambda found, language: {"flags": found["flags"]},
    ),
    (re.compile(r"^a text result is not released unseen$"), "text_result", _plain),
    (
        re.compile(r"^reported as (?P<value>\S+): outside the measuring range$"),
        "measuring_range",
        _plain,
    ),
    (
        re.compile(
            r"^(?P<value>\S+) (?P<unit>\S*) ?is not a value a living patient can have "
            r"\(plausible (?P<limits>.+)\); measure again$"
        ),
        "implausible",
        lambda found, language: {
            "value": _numbers(found["value"], language),
            "limits": _limits(found["limits"], language),
        },
    ),
    (
        re.compile(r"^changed from (?P<previous>\S+) to (?P<value>\S+) \(limit (?P<limit>.+)\)$"),
        "delta",
        lambda found, language: {
            "previous": _numbers(found["previous"], language),
            "value": _numbers(found["value"], language),
            "limit": delta_limit(found["limit"], language),
        },
    ),
    (
        re.compile(r"^no reference interval: the patient's age at collection is unknown$"),
        "no_interval_age",
        _plain,
    ),
    (
        re.compile(r"^no reference interval for sex (?P<sex>\S+) at (?P<days>\d+) days of age$"),
        "no_interval_for",
        lambda found, language: {
            "sex": translate(language, f"sex.{found['sex']}")
            if has_text(language, f"sex.{found['sex']}")
            else found["sex"],
            "days": found["days"],
        },
    ),
    (re.compile(r"^no reference interval applies to this patient$"), "no_interval", _plain),
    (
        re.compile(r"^outside the autoverification range (?P<low>\S*)-(?P<high>\S*)$"),
        "autoverify_range",
        _plain,
    ),
    (re.compile(r"^below the critical limit (?P<limit>\S+)$"), "critical_below", _plain),
    (re.compile(r"^above the critical limit (?P<limit>\S+)$"), "critical_above", _plain),
    (re.compile(r"^beyond the critical limit$"), "critical", _plain),
    (
        re.compile(r"^(?P<test>\S+): (?P<indices>.*index.*)$"),
        "interference",
        lambda found, language: {"indices": _indices(found["indices"], language)},
    ),
    (
        re.compile(r"^released together with (?P<tests>.+)$"),
        "waits_for",
        lambda found, language: {"tests": found["tests"]},
    ),
    (
        re.compile(r"^measured (?P<n>\d+) times with different values: choose the one to report$"),
        "choose",
        lambda found, language: {"n": found["n"]},
    ),
)


def hold_detail(text: str, language: Language) -> str:
    """The hold's sentence in `language`; "" on a bokmål page when the sentence is unknown."""
    for pattern, name, params in _SENTENCES:
        found = pattern.match(text or "")
        if found is not None:
            return translate(language, f"hold.text.{name}", **params(found, language))
    return text if language == "en" else ""


def known(text: str) -> bool:
    """Whether the sentence is one this module says in every language (for the tests)."""
    return any(pattern.match(text) for pattern, _, _ in _SENTENCES)


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
