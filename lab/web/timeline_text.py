"""The details of a tube's timeline in the page's language.

The specimen service writes each event's detail as a short English phrase (it is also the
audit trail's); the pages show the known phrases in the reader's language and anything typed
by a person (a comment, a reason) as it was typed.
"""

from __future__ import annotations

import re

from lab.specimens.service import REJECT_REASONS
from lab.web.i18n import Language, translate

_ACCESSION_FIRST = re.compile(r"^(\d{10}) (.+)$")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^for order (?P<order>\S+)$"), "timeline.for_order"),
    (re.compile(r"^aliquot of (?P<number>\S+)$"), "timeline.aliquot_of"),
    (re.compile(r"^aliquot (?P<number>\S+)$"), "timeline.aliquot"),
    (re.compile(r"^collected (?P<at>.+)$"), "timeline.collected"),
    (re.compile(r"^received in the lab$"), "timeline.received"),
    (re.compile(r"^received \(first result arrived\)$"), "timeline.received_first_result"),
    (re.compile(r"^disposed$"), "timeline.disposed"),
)
_REJECT_CODE = {text: code for code, text in REJECT_REASONS.items()}


def event_detail(detail: str, language: Language) -> str:
    if not detail:
        return ""
    tube = _ACCESSION_FIRST.match(detail)
    if tube is not None:  # the order's timeline names the tube first
        return f"{tube[1]} {event_detail(tube[2], language)}"
    for pattern, key in _PATTERNS:
        found = pattern.match(detail)
        if found is not None:
            return translate(language, key, **found.groupdict())
    reason, _, comment = detail.partition(": ")
    if reason in _REJECT_CODE:
        shown = translate(language, f"reject.{_REJECT_CODE[reason]}")
        return f"{shown}: {comment}" if comment else shown
    return detail
