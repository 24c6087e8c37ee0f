"""From the lab's models to the report types: labels, result reports and cumulative reports.

The renderers in `lab.reports` take plain frozen dataclasses; this module is the one place
where the pages convert orders, specimens, results and patients into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from fastapi.responses import Response
from sqlalchemy.orm import Session

from lab.config import Settings
from lab.errors import InvalidInput
from lab.patients.identifiers import IdentifierKind
from lab.reports import (
    CumulativeReport,
    CumulativeSample,
    CumulativeTestRow,
    CumulativeValue,
    LabDetails,
    OrderDetails,
    PatientDetails,
    ReferenceInterval,
    ResultLine,
    ResultReport,
    SpecimenLabel,
    Verification,
)
from lab.reports.formatting import display_clinician, display_unit
from lab.reports.types import AbnormalFlag, Comparator, Language, Priority, ResultStatus, Sex
from lab.results.queries import CumulativePoint
from lab.tables import (
    RELEASED,
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    ResultVersion,
    Specimen,
    TestStatus,
)
from lab.tables import ResultStatus as StoredStatus
from lab.users import service as users
from lab.web.hold_text import who

NATIONAL_KINDS = (IdentifierKind.FNR.value, IdentifierKind.DNR.value, IdentifierKind.HNR.value)
# Order priorities (lab/orders/service.py) to the report's words (ASTM O-6 / HL7 TQ1-9).
PRIORITIES: dict[str, Priority] = {"routine": "routine", "urgent": "asap", "stat": "stat"}
# Result statuses to HL7 OBX-11 in the report's words. Results not yet verified are printed
# as pending without their value: an unreviewed value must not leave the lab on paper.
REPORT_STATUS: dict[str, ResultStatus] = {
    StoredStatus.VERIFIED: "final",
    StoredStatus.CORRECTED: "corrected",
    StoredStatus.CANCELLED: "cannot_be_done",
}
# The stored strings to the report's literal types (anything else is not printed as such).
_FLAGS: dict[str, AbnormalFlag] = {"L": "L", "H": "H", "LL": "LL", "HH": "HH", "A": "A"}
_COMPARATORS: dict[str, Comparator] = {"<": "<", ">": ">", "<=": "<=", ">=": ">="}
_SEXES: dict[str, Sex] = {"F": "F", "M": "M", "O": "O", "U": "U"}


def pdf_response(pdf: bytes, filename: str) -> Response:
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def patient_details(patient: Patient) -> PatientDetails:
    if patient.birth_date is None:
        raise InvalidInput.field(
            "birth_date",
            "the patient has no birth date, which every printout must carry",
            code="birth_date_missing",
        )
    national = [i for i in patient.identifiers if i.kind in NATIONAL_KINDS]
    chosen = (national or list(patient.identifiers))[:1]
    return PatientDetails(
        family_name=patient.family_name,
        given_name=patient.given_name,
        identifier=chosen[0].value if chosen else "-",
        birth_date=patient.birth_date,
        sex=_SEXES.get(patient.sex, "U"),
    )


def specimen_label(
    specimen: Specimen, order: Order, patient: PatientDetails, tests: Sequence[OrderedTest]
) -> SpecimenLabel:
    return SpecimenLabel(
        accession_number=specimen.accession_number,
        patient=patient,
        container=specimen.container,
        tests=tuple(t.test.code for t in tests if t.status != TestStatus.CANCELLED),
        priority=PRIORITIES.get(order.priority, "routine"),
        collected_at=specimen.collected_at,
    )


def _flag(flags: Sequence[str]) -> AbnormalFlag | None:
    for flag in flags:
        if flag in _FLAGS:
            return _FLAGS[flag]
    return None


def _comparator(text: str | None) -> Comparator | None:
    return _COMPARATORS.get(text) if text else None


def _interval(low: Decimal | None, high: Decimal | None) -> ReferenceInterval | None:
    if low is None and high is None:
        return None
    return ReferenceInterval(low=low, high=high)


def _codes(test: LabTest) -> str:
    """The test's LOINC and NLK codes for the report's footnote (OBX-3 is unchanged)."""
    codes = [f"LOINC {test.loinc}" if test.loinc else "", f"NLK {test.nlk}" if test.nlk else ""]
    return " · ".join(code for code in codes if code)


def result_line(test: LabTest, result: Result | None, language: Language) -> ResultLine:
    name = test.name_en if language == "en" else test.name_nb
    if result is None or result.status not in REPORT_STATUS:
        return ResultLine(
            test_name=name,
            value=None,
            unit=display_unit(test.unit, language),
            status="pending",
            codes=_codes(test),
        )
    status = REPORT_STATUS[result.status]
    current = result.versions[-1]
    if status == "cannot_be_done":
        return ResultLine(
            test_name=name,
            value=None,
            unit=display_unit(test.unit, language),
            status=status,
            codes=_codes(test),
        )
    value: Decimal | str | None = (
        result.value_numeric if result.value_numeric is not None else result.value_text
    )
    replaced = _replaced_version(result) if status == "corrected" else None
    return ResultLine(
        test_name=name,
        codes=_codes(test),
        value=value,
        unit=display_unit(result.unit, language),
        comparator=_comparator(result.comparator) if result.value_numeric is not None else None,
        reference_interval=_interval(current.reference_low, current.reference_high),
        flag=_flag(result.flags),
        status=status,
        comment=current.comment or None,
        corrected_from=(
            (replaced.value_numeric if replaced.value_numeric is not None else replaced.value_text)
            if replaced is not None
            else None
        ),
        corrected_from_comparator=(
            _comparator(replaced.comparator)
            if replaced is not None and replaced.value_numeric is not None
            else None
        ),
        correction_reason=(current.reason or None) if replaced is not None else None,
    )


def _replaced_version(result: Result) -> ResultVersion | None:
    """The released value a correction replaced: the version before the current one that was
    verified or corrected (what the clinician may have read)."""
    for version in reversed(result.versions[:-1]):
        if version.status in RELEASED:
            return version
    return None


def lab_details(settings: Settings) -> LabDetails:
    """The lab's name, address and telephone as the operator configured them (LAB_NAME,
    LAB_ADDRESS with lines split by ';', LAB_PHONE)."""
    lines = tuple(line.strip() for line in settings.lab_address.split(";") if line.strip())
    return LabDetails(
        name=settings.lab_name, address_lines=lines, phone=settings.lab_phone.strip() or None
    )


def signer_name(session: Session, username: str, language: Language = "nb") -> str:
    """`Lise Lien, overlege`: who verified, by name and title as the users list has them.

    A release by the autoverification rule set says so in the report's language; another user
    name that is not a person (an analyser) is printed as it is.
    """
    if username != who(username, language):
        return who(username, language)
    user = users.get_by_username(session, username)
    if user is None:
        return username
    title = user.title.strip()
    name = user.display_name.strip() or username
    return f"{name}, {title}" if title else name


def result_report(
    *,
    lab: LabDetails,
    signer: str | None = None,
    order: Order,
    patient: Patient,
    specimens: Sequence[Specimen],
    results: Sequence[Result],
    printed_at: datetime,
    language: Language,
) -> ResultReport:
    by_test = {r.ordered_test_id: r for r in results}
    released = [r for r in results if r.verified_at is not None and r.verified_by]
    latest = max(released, key=lambda r: r.verified_at or printed_at, default=None)
    collected = [s.collected_at for s in specimens if s.collected_at is not None]
    received = [s.received_at for s in specimens if s.received_at is not None]
    return ResultReport(
        lab=lab,
        patient=patient_details(patient),
        order=OrderDetails(
            placer_order_number=order.placer_order_number,
            filler_order_number=order.filler_order_number,
            ordering_clinician=display_clinician(order.ordering_clinician),
            ordering_location=order.ordering_location,
            collected_at=min(collected, default=None),
            received_at=min(received, default=None),
        ),
        results=tuple(
            result_line(t.test, by_test.get(t.id), language)
            for t in order.tests
            if t.status != TestStatus.CANCELLED or t.id in by_test
        ),
        printed_at=printed_at,
        verification=(
            Verification(
                verified_by=signer or latest.verified_by or "", verified_at=latest.verified_at
            )
            if latest is not None and latest.verified_at is not None
            else None
        ),
        language=language,
    )


def cumulative_report(
    *,
    lab: LabDetails,
    patient: Patient,
    tests: Sequence[tuple[LabTest, Sequence[CumulativePoint]]],
    printed_at: datetime,
    language: Language,
) -> CumulativeReport:
    """One row per test, one column per sample (a sample that holds several of the tests is
    one column): the patient's released results side by side over time."""
    samples: dict[str, CumulativeSample] = {}
    rows: list[CumulativeTestRow] = []
    for test, points in tests:
        values: list[CumulativeValue] = []
        seen: set[str] = set()
        for point in points:
            if point.accession_number in seen:
                continue
            seen.add(point.accession_number)
            samples.setdefault(
                point.accession_number,
                CumulativeSample(
                    accession_number=point.accession_number, collected_at=point.taken_at
                ),
            )
            numeric = point.value_numeric is not None
            value: Decimal | str = (
                point.value_numeric if point.value_numeric is not None else point.value_text or ""
            )
            values.append(
                CumulativeValue(
                    accession_number=point.accession_number,
                    value=value,
                    comparator=_comparator(point.comparator) if numeric else None,
                    flag=_flag(point.flags),
                )
            )
        newest = points[0] if points else None
        rows.append(
            CumulativeTestRow(
                test_name=test.name_en if language == "en" else test.name_nb,
                unit=display_unit(test.unit, language),
                reference_interval=(
                    _interval(newest.reference_low, newest.reference_high) if newest else None
                ),
                values=tuple(values),
            )
        )
    return CumulativeReport(
        lab=lab,
        patient=patient_details(patient),
        samples=tuple(samples.values()),
        tests=tuple(rows),
        printed_at=printed_at,
        language=language,
    )
