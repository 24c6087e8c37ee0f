"""The input of the report renderers: plain frozen dataclasses, no ORM, no I/O.

The services convert their models to these. Every check that protects the printed output
(timezone-aware times, finite numbers, printable accession numbers, bounded text lengths) is
done here, at construction, so a renderer never sees input it cannot lay out.
Times are timezone-aware (UTC from the services); renderers show them in Europe/Oslo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Language = Literal["nb", "en"]
# PID-8 administrative sex (HL7 v2.5.1 table 0001), the subset the record sends.
Sex = Literal["F", "M", "O", "U"]
# ASTM E1394 O-6 / HL7 TQ1-9 priorities as the lab uses them.
Priority = Literal["routine", "asap", "stat"]
# ASTM E1394 R-7 / HL7 OBX-8 abnormal flags shown on reports.
AbnormalFlag = Literal["L", "H", "LL", "HH", "A"]
# HL7 OBX-11 result status in the lab's words: I, P, F, C, X.
ResultStatus = Literal["pending", "preliminary", "final", "corrected", "cannot_be_done"]
Comparator = Literal["<", ">", "<=", ">="]

# Longest accession number a label accepts; the stock decides whether it also fits.
MAX_ACCESSION_LENGTH = 32
# Bounds on free text so that one table row always fits on one page. HL7 v2.5.1 allows
# at most 194 characters in XPN-1 (family name), so 200 covers every name the record sends.
MAX_NAME_LENGTH = 200
MAX_TEST_NAME_LENGTH = 200
MAX_COMMENT_LENGTH = 20_000


class ReportError(Exception):
    """Base of the errors the report renderers raise."""


class ReportInputError(ReportError, ValueError):
    """The caller passed data that cannot be printed (a local error: fix the caller)."""


class LabelDoesNotFitError(ReportInputError):
    """The label content (usually the barcode) does not fit the chosen label stock."""


def _require_aware(name: str, moment: datetime | None) -> None:
    if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
        raise ReportInputError(f"{name} must be timezone-aware (UTC), got {moment!r}")


def _require_finite(name: str, value: Decimal | None) -> None:
    if value is not None and not value.is_finite():
        raise ReportInputError(f"{name} must be a finite number, got {value!r}")


def _require_text(name: str, text: str, *, max_length: int, allow_empty: bool = False) -> None:
    if not allow_empty and not text.strip():
        raise ReportInputError(f"{name} must not be empty")
    if len(text) > max_length:
        raise ReportInputError(f"{name} is longer than {max_length} characters")


def check_accession_number(accession_number: str) -> None:
    """Raise unless the accession number can be a Code 128 barcode and be typed back.

    Code 128 code sets A/B cover ASCII only (ISO/IEC 15417, annex D); reportlab's Code128
    silently drops anything else, which would print a barcode that scans as a different
    specimen. Spaces are refused because a scanner that acts as a keyboard loses them.
    """
    if not 1 <= len(accession_number) <= MAX_ACCESSION_LENGTH:
        raise ReportInputError(
            f"accession number must have 1 to {MAX_ACCESSION_LENGTH} characters, "
            f"got {len(accession_number)}"
        )
    bad = [c for c in accession_number if not "!" <= c <= "~"]
    if bad:
        raise ReportInputError(
            f"accession number {accession_number!r} has characters a barcode cannot carry: "
            + ", ".join(f"U+{ord(c):04X}" for c in bad)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientDetails:
    family_name: str
    given_name: str
    # Fødselsnummer, D-number or H-number (11 digits, validated by the patients service),
    # or another identifier printed as it is.
    identifier: str
    birth_date: date
    sex: Sex = "U"

    def __post_init__(self) -> None:
        _require_text("family_name", self.family_name, max_length=MAX_NAME_LENGTH)
        _require_text("given_name", self.given_name, max_length=MAX_NAME_LENGTH, allow_empty=True)
        _require_text("identifier", self.identifier, max_length=64)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecimenLabel:
    accession_number: str
    patient: PatientDetails
    container: str  # e.g. "EDTA", "Serum", "Li-heparin"
    tests: tuple[str, ...]  # short local codes, e.g. ("HB", "LPK")
    priority: Priority = "routine"
    collected_at: datetime | None = None

    def __post_init__(self) -> None:
        check_accession_number(self.accession_number)
        object.__setattr__(self, "tests", tuple(self.tests))
        _require_text("container", self.container, max_length=100)
        _require_aware("collected_at", self.collected_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelStock:
    """A roll of labels in a label printer: size, unprintable margin and print resolution."""

    name: str
    width_mm: float
    height_mm: float
    margin_mm: float
    barcode_height_mm: float
    font_size_pt: float
    min_font_size_pt: float = 5.0
    printer_dpi: int = 203

    def __post_init__(self) -> None:
        if not (self.width_mm > 0 and self.height_mm > 0 and self.barcode_height_mm > 0):
            raise ReportInputError("label stock sizes must be positive")
        if not 0 <= self.margin_mm < min(self.width_mm, self.height_mm) / 2:
            raise ReportInputError("label stock margin must leave a printable area")
        if not 0 < self.min_font_size_pt <= self.font_size_pt:
            raise ReportInputError("label stock font sizes must be positive, min <= base")
        if self.printer_dpi < 100:
            raise ReportInputError("printer_dpi below 100 cannot print a scannable barcode")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabDetails:
    name: str
    address_lines: tuple[str, ...] = ()
    phone: str | None = None

    def __post_init__(self) -> None:
        _require_text("lab name", self.name, max_length=200)
        object.__setattr__(self, "address_lines", tuple(self.address_lines))


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDetails:
    placer_order_number: str  # ORC-2 / OBR-2, the record's number
    filler_order_number: str  # ORC-3 / OBR-3, the lab's number
    ordering_clinician: str
    ordering_location: str
    collected_at: datetime | None = None
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware("collected_at", self.collected_at)
        _require_aware("received_at", self.received_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceInterval:
    """Low and/or high limit, or a text such as "Negativ" when the interval is not numeric."""

    low: Decimal | None = None
    high: Decimal | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        _require_finite("reference low", self.low)
        _require_finite("reference high", self.high)
        if self.low is None and self.high is None and not self.text:
            raise ReportInputError("a reference interval needs a limit or a text")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ReportInputError(f"reference interval {self.low}-{self.high} is reversed")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultLine:
    test_name: str
    # Decimal keeps the analyser's precision ("4.50" prints "4,50"); str is a text result.
    value: Decimal | str | None
    unit: str = ""
    comparator: Comparator | None = None  # "<0,5" is comparator "<" and value 0.5
    reference_interval: ReferenceInterval | None = None
    flag: AbnormalFlag | None = None
    status: ResultStatus = "final"
    comment: str | None = None
    # A corrected result says what it replaced and why (the value the clinician may have acted on).
    corrected_from: Decimal | str | None = None
    corrected_from_comparator: Comparator | None = None
    correction_reason: str | None = None
    # The test's codes for the footnote ("LOINC 2951-2 · NLK NOR25613"); "" prints none.
    codes: str = ""

    def __post_init__(self) -> None:
        _require_text("test_name", self.test_name, max_length=MAX_TEST_NAME_LENGTH)
        if isinstance(self.corrected_from, Decimal):
            _require_finite("corrected_from", self.corrected_from)
        if isinstance(self.value, Decimal):
            _require_finite("value", self.value)
        elif self.comparator is not None:
            raise ReportInputError("a comparator needs a numeric value")
        if self.comment is not None:
            _require_text("comment", self.comment, max_length=MAX_COMMENT_LENGTH, allow_empty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    verified_by: str
    verified_at: datetime

    def __post_init__(self) -> None:
        _require_text("verified_by", self.verified_by, max_length=MAX_NAME_LENGTH)
        _require_aware("verified_at", self.verified_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultReport:
    lab: LabDetails
    patient: PatientDetails
    order: OrderDetails
    results: tuple[ResultLine, ...]
    printed_at: datetime  # passed in, not read from a clock, so output depends on input only
    verification: Verification | None = None
    language: Language = "nb"

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", tuple(self.results))
        _require_aware("printed_at", self.printed_at)

    @property
    def is_corrected(self) -> bool:
        return any(result.status == "corrected" for result in self.results)


@dataclass(frozen=True, slots=True, kw_only=True)
class CumulativeSample:
    accession_number: str
    collected_at: datetime

    def __post_init__(self) -> None:
        _require_aware("collected_at", self.collected_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class CumulativeValue:
    accession_number: str  # which sample (column) the value belongs to
    value: Decimal | str
    comparator: Comparator | None = None
    flag: AbnormalFlag | None = None

    def __post_init__(self) -> None:
        if isinstance(self.value, Decimal):
            _require_finite("value", self.value)
        elif self.comparator is not None:
            raise ReportInputError("a comparator needs a numeric value")


@dataclass(frozen=True, slots=True, kw_only=True)
class CumulativeTestRow:
    test_name: str
    unit: str = ""
    reference_interval: ReferenceInterval | None = None
    values: tuple[CumulativeValue, ...] = ()

    def __post_init__(self) -> None:
        _require_text("test_name", self.test_name, max_length=MAX_TEST_NAME_LENGTH)
        object.__setattr__(self, "values", tuple(self.values))
        seen: set[str] = set()
        for value in self.values:
            if value.accession_number in seen:
                raise ReportInputError(
                    f"{self.test_name}: two values for sample {value.accession_number}"
                )
            seen.add(value.accession_number)


@dataclass(frozen=True, slots=True, kw_only=True)
class CumulativeReport:
    lab: LabDetails
    patient: PatientDetails
    samples: tuple[CumulativeSample, ...]
    tests: tuple[CumulativeTestRow, ...]
    printed_at: datetime
    language: Language = "nb"
    samples_per_page: int = 8
    # Filled in __post_init__: samples newest first, the column order of the report.
    samples_newest_first: tuple[CumulativeSample, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "tests", tuple(self.tests))
        _require_aware("printed_at", self.printed_at)
        if not 1 <= self.samples_per_page <= 12:
            # 12 columns of about 14 mm is the narrowest that still holds "12345,6 HH".
            raise ReportInputError("samples_per_page must be between 1 and 12")
        accessions = [sample.accession_number for sample in self.samples]
        if len(set(accessions)) != len(accessions):
            raise ReportInputError("a sample appears twice in the cumulative report")
        known = set(accessions)
        for row in self.tests:
            for value in row.values:
                if value.accession_number not in known:
                    raise ReportInputError(
                        f"{row.test_name}: value for unknown sample {value.accession_number}"
                    )
        ordered = sorted(
            self.samples, key=lambda s: (s.collected_at, s.accession_number), reverse=True
        )
        object.__setattr__(self, "samples_newest_first", tuple(ordered))
