"""Norwegian display formats for printed reports: pure functions, no fonts, no clocks.

Times are stored in UTC and shown in Europe/Oslo as `27.11.2026 08:15` in both languages (the
lab is Norwegian; an English report is still read against Norwegian clocks). Numbers use a
decimal comma in bokmål and a point in English, keep the precision the analyser reported
(Decimal("4.50") prints "4,50") and are never grouped in thousands, because a space inside
a lab value is read as two values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from lab.reports.types import (
    AbnormalFlag,
    Comparator,
    Language,
    ReferenceInterval,
    ReportInputError,
    ResultStatus,
    Sex,
)

OSLO = ZoneInfo("Europe/Oslo")

_COMPARATOR_SIGNS: dict[Comparator, str] = {"<": "<", ">": ">", "<=": "≤", ">=": "≥"}


def to_oslo(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ReportInputError(f"cannot show a naive time as Oslo time: {moment!r}")
    return moment.astimezone(OSLO)


def format_datetime(moment: datetime) -> str:
    """`27.11.2026 08:15` in Oslo time (CET/CEST follow the date, via zoneinfo)."""
    return to_oslo(moment).strftime("%d.%m.%Y %H:%M")


def format_time_of_day(moment: datetime) -> str:
    return to_oslo(moment).strftime("%H:%M")


def format_date(day: date) -> str:
    """`05.01.1987`: a birth date is a calendar date, so no timezone applies."""
    return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"


def format_decimal(value: Decimal, language: Language) -> str:
    if not value.is_finite():
        raise ReportInputError(f"cannot print the number {value!r}")
    # Fixed-point, never exponent: Decimal("1E+3") is printed 1000 and 1.50E-2 as 0.0150.
    text = format(value, "f")
    if text.startswith("-") and value.is_zero():
        text = text[1:]
    return text.replace(".", ",") if language == "nb" else text


def format_value(
    value: Decimal | str | None, comparator: Comparator | None, language: Language
) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    sign = _COMPARATOR_SIGNS[comparator] if comparator is not None else ""
    return sign + format_decimal(value, language)


def format_reference_interval(interval: ReferenceInterval | None, language: Language) -> str:
    """`3,5–5,0`, `< 5` (upper limit only), `> 60` (lower limit only) or the interval's text."""
    if interval is None:
        return ""
    if interval.low is not None and interval.high is not None:
        low = format_decimal(interval.low, language)
        return f"{low}–{format_decimal(interval.high, language)}"
    if interval.high is not None:
        return f"< {format_decimal(interval.high, language)}"
    if interval.low is not None:
        return f"> {format_decimal(interval.low, language)}"
    return interval.text or ""


def format_patient_identifier(identifier: str) -> str:
    """Fødselsnummer, D- and H-numbers (11 digits) as `ddmmyy nnnnn`; anything else as it is.

    The split after the six-digit date part is how Norwegian forms print the number.
    """
    compact = identifier.replace(" ", "")
    if len(compact) == 11 and compact.isascii() and compact.isdigit():
        return f"{compact[:6]} {compact[6:]}"
    return identifier


def format_patient_name(family_name: str, given_name: str) -> str:
    """`Family, Given`: the family name first, as on Norwegian hospital labels and lists."""
    family = " ".join(family_name.split())
    given = " ".join(given_name.split())
    return f"{family}, {given}" if given else family


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportTexts:
    """The fixed words on the printed reports in one language."""

    result_report_title: str
    cumulative_title: str
    corrected_banner: str
    patient: str
    identifier: str
    birth_date: str
    sex: str
    order: str
    placer_order_number: str
    filler_order_number: str
    ordering_clinician: str
    ordering_location: str
    collected_at: str
    received_at: str
    test: str
    result: str
    unit: str
    reference_interval: str
    flag: str
    status: str
    comment: str
    long_comments: str
    test_codes: str
    verified_by: str  # "{who}" and "{when}" are filled in
    corrected_from: str  # "{value}" and "{reason}" are filled in
    not_verified: str
    printed_at: str
    page: str  # "{page}" and "{total}" are filled in
    samples_shown: str  # "{first}", "{last}", "{count}"
    newest_first: str
    no_results: str
    sex_names: dict[Sex, str]
    status_names: dict[ResultStatus, str]


TEXTS: dict[Language, ReportTexts] = {
    "nb": ReportTexts(
        result_report_title="Laboratoriesvar",
        cumulative_title="Kumulativt svar",
        corrected_banner="KORRIGERT SVAR",
        patient="Pasient",
        identifier="Fødselsnr.",
        birth_date="Født",
        sex="Kjønn",
        order="Rekvisisjon",
        placer_order_number="Rekvirentens nr.",
        filler_order_number="Laboratoriets nr.",
        ordering_clinician="Rekvirent",
        ordering_location="Avdeling",
        collected_at="Prøvetatt",
        received_at="Mottatt",
        test="Analyse",
        result="Resultat",
        unit="Enhet",
        reference_interval="Ref.område",
        flag="Flagg",
        status="Status",
        comment="Kommentar",
        long_comments="Kommentarer",
        test_codes="Analysekoder (LOINC, NLK – Norsk laboratoriekodeverk)",
        verified_by="Godkjent av {who} {when}",
        corrected_from="Korrigert fra {value}. Årsak: {reason}",
        not_verified="Ikke godkjent – foreløpig svar",
        printed_at="Utskrevet",
        page="Side {page} av {total}",
        samples_shown="Prøve {first}–{last} av {count}",
        newest_first="nyeste prøve først",
        no_results="Ingen resultater",
        sex_names={"F": "Kvinne", "M": "Mann", "O": "Annet", "U": "Ukjent"},
        status_names={
            "pending": "Under arbeid",
            "preliminary": "Foreløpig",
            "final": "Endelig",
            "corrected": "Korrigert",
            "cannot_be_done": "Kan ikke utføres",
        },
    ),
    "en": ReportTexts(
        result_report_title="Laboratory report",
        cumulative_title="Cumulative report",
        corrected_banner="CORRECTED REPORT",
        patient="Patient",
        identifier="National ID",
        birth_date="Born",
        sex="Sex",
        order="Order",
        placer_order_number="Placer order no.",
        filler_order_number="Lab order no.",
        ordering_clinician="Ordered by",
        ordering_location="Location",
        collected_at="Collected",
        received_at="Received",
        test="Test",
        result="Result",
        unit="Unit",
        reference_interval="Ref. interval",
        flag="Flag",
        status="Status",
        comment="Comment",
        long_comments="Comments",
        test_codes="Test codes (LOINC, NLK – Norwegian laboratory code list)",
        verified_by="Verified by {who} at {when}",
        corrected_from="Corrected from {value}. Reason: {reason}",
        not_verified="Not verified – preliminary report",
        printed_at="Printed",
        page="Page {page} of {total}",
        samples_shown="Samples {first}–{last} of {count}",
        newest_first="newest sample first",
        no_results="No results",
        sex_names={"F": "Female", "M": "Male", "O": "Other", "U": "Unknown"},
        status_names={
            "pending": "Pending",
            "preliminary": "Preliminary",
            "final": "Final",
            "corrected": "Corrected",
            "cannot_be_done": "Cannot be done",
        },
    ),
}


def format_flag(flag: AbnormalFlag | None) -> str:
    return flag or ""


def format_page_number(page: int, total: int | None, language: Language) -> str:
    return TEXTS[language].page.format(page=page, total="?" if total is None else total)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_POWER_OF_TEN = re.compile(r"^10\*(-?\d+)(?=/|$)")
_MICRO = re.compile(r"(?<![A-Za-z])u(?=(mol|g|L|l|IU|U|kat)\b)")
_BODY_SURFACE = "{1.73_m2}"


def display_unit(ucum: str | None, language: Language = "nb") -> str:
    """A UCUM unit as Norwegian lab reports print it; the data and messages keep UCUM.

    `10*9/L` is printed `×10⁹/L` (a count per litre), `umol/L` is `µmol/L` (UCUM's ASCII
    form writes the micro prefix as `u`), and the eGFR's `mL/min/{1.73_m2}` is
    `mL/min/1,73 m²` (in UCUM a curly-brace annotation is text that names no unit).
    Anything else is printed as it is.
    """
    if not ucum:
        return ""
    text = ucum.strip()
    power = _POWER_OF_TEN.match(text)
    if power is not None:
        text = "×10" + power.group(1).translate(_SUPERSCRIPT) + text[power.end() :]
    text = _MICRO.sub("µ", text)
    if text.endswith(_BODY_SURFACE):
        surface = "1,73 m²" if language == "nb" else "1.73 m²"
        text = text[: -len(_BODY_SURFACE)] + surface
    return text


def display_clinician(stored: str | None) -> str:
    """The ordering clinician as a reader expects it: `Lise Lien (HPR 9144889)`.

    The order keeps what the record sent (an HL7 XCN: ID^family^given^...^authority, the
    authority in XCN-9, or in the fourth component in the lab's short form); a plain name is
    printed as it is.
    """
    if not stored:
        return ""
    parts = stored.split("^")
    if len(parts) < 3:
        return stored.strip()
    number, family, given = parts[0].strip(), parts[1].strip(), parts[2].strip()
    authority = ""
    if len(parts) >= 9 and parts[8].strip():
        authority = parts[8].strip()
    elif len(parts) == 4:
        authority = parts[3].strip()
    name = " ".join(p for p in (given, family) if p)
    if not number:
        return name
    label = f"{authority} {number}" if authority else number
    return f"{name} ({label})" if name else label
