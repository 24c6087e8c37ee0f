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


# Why an analyser's result is in the unmatched queue: the sentences the analyser side and the
# result path write there (instruments.messages, lab.results), said as the errors are
# (`error.<code>`) or by `unmatched.why.<name>`.
_VALUE_CHECK = (
    ("is not a finite number", "not_finite"),
    ("is not a number", "not_a_number"),
    ("out of any sane range", "out_of_range"),
    ("significant digits", "too_many_digits"),
    ("smaller than any analyser", "too_small"),
    ("is negative", "negative"),
    ("the value is empty", "empty"),
)
_UNMATCHED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^test code '(?P<code>.+)' is not mapped for analyser (?P<analyser>\S+)$"),
        "unmatched.why.not_mapped",
    ),
    (
        re.compile(r"^the result has no specimen ID \(looked in (?P<fields>.+) of the O record"),
        "unmatched.why.no_specimen",
    ),
    (
        re.compile(r"^result status '(?P<status>.*)' \(R-9\) is not a result to record$"),
        "unmatched.why.status",
    ),
    (re.compile(r"^(?P<code>\S+) is not ordered on (?P<number>\S+)$"), "error.test_not_ordered"),
    (re.compile(r"^unknown test code '(?P<code>.+)'$"), "error.test_unknown"),
    (
        re.compile(r"^(?P<code>\S+) on (?P<number>\S+) (?:was|is) cancelled$"),
        "error.test_cancelled",
    ),
    (
        re.compile(
            r"^(?P<code>\S+) is reported in (?P<unit>\S+), not (?P<given>.+); "
            r"no conversion is made$"
        ),
        "error.unit_mismatch",
    ),
    (
        re.compile(r"^(?P<number>\S+) is (?P<status>\S+); no results can be added$"),
        "error.specimen_closed",
    ),
    (re.compile(r"^no specimen with accession number (?P<number>\S+)$"), "error.specimen_unknown"),
    (
        re.compile(r"^(?P<number>\S+) is not a valid accession number \(check digit\)$"),
        "error.accession_check_digit",
    ),
)
_NOT_A_NUMBER = re.compile(r"^(?P<code>\S+) takes a number: (?P<why>.+)$")


def unmatched_reason(reason: str, language: Language) -> str:
    """Why the result could not be stored, in `language`; an unknown sentence as it is (the
    page marks it as English)."""
    found = _NOT_A_NUMBER.match(reason or "")
    if found is not None:
        why = found["why"]
        code = next((code for marker, code in _VALUE_CHECK if marker in why), "")
        value = why.split(" is ", 1)[0].split(" has ", 1)[0] if code != "empty" else ""
        return translate(
            language,
            "error.value_not_number",
            code=found["code"],
            value=value,
            why=translate(language, f"value_check.{code}"),
        )
    for pattern, key in _UNMATCHED:
        found = pattern.match(reason or "")
        if found is not None:
            params = dict(found.groupdict())
            if "status" in params and has_text(language, f"status.{params['status']}"):
                params["status"] = translate(language, f"status.{params['status']}")
            return translate(language, key, **params)
    return reason or ""


def unmatched_known(reason: str) -> bool:
    return bool(_NOT_A_NUMBER.match(reason)) or any(p.match(reason) for p, _ in _UNMATCHED)
