"""From the lab's models to the report types: labels, result reports and cumulative reports.

The renderers in `lab.reports` take plain frozen dataclasses; this module is the one place
where the pages convert orders, specimens, results and patients into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from fastapi.responses import Response

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
from lab.reports.types import AbnormalFlag, Comparator, Language, Priority, ResultStatus, Sex
from lab.results.queries import CumulativePoint
from lab.tables import (
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    Specimen,
    TestStatus,
)
from lab.tables import ResultStatus as StoredStatus

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
            "birth_date", "the patient has no birth date, which every printout must carry"
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


def result_line(test: LabTest, result: Result | None, language: Language) -> ResultLine:
    name = test.name_en if language == "en" else test.name_nb
    if result is None or result.status not in REPORT_STATUS:
        return ResultLine(test_name=name, value=None, unit=test.unit or "", status="pending")
    status = REPORT_STATUS[result.status]
    current = result.versions[-1]
    if status == "cannot_be_done":
        return ResultLine(test_name=name, value=None, unit=test.unit or "", status=status)
    value: Decimal | str | None = (
        result.value_numeric if result.value_numeric is not None else result.value_text
    )
    return ResultLine(
        test_name=name,
        value=value,
        unit=result.unit or "",
        comparator=_comparator(result.comparator) if result.value_numeric is not None else None,
        reference_interval=_interval(current.reference_low, current.reference_high),
        flag=_flag(result.flags),
        status=status,
        comment=current.comment or None,
    )


def result_report(
    *,
    lab_name: str,
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
        lab=LabDetails(name=lab_name),
        patient=patient_details(patient),
        order=OrderDetails(
            placer_order_number=order.placer_order_number,
            filler_order_number=order.filler_order_number,
            ordering_clinician=order.ordering_clinician,
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
            Verification(verified_by=latest.verified_by or "", verified_at=latest.verified_at)
            if latest is not None and latest.verified_at is not None
            else None
        ),
        language=language,
    )


def cumulative_report(
    *,
    lab_name: str,
    patient: Patient,
    test: LabTest,
    results: Sequence[CumulativePoint],
    printed_at: datetime,
    language: Language,
) -> CumulativeReport:
    samples: list[CumulativeSample] = []
    values: list[CumulativeValue] = []
    seen: set[str] = set()
    for point in results:
        if point.accession_number in seen:
            continue
        seen.add(point.accession_number)
        samples.append(
            CumulativeSample(accession_number=point.accession_number, collected_at=point.taken_at)
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
    newest = results[0] if results else None
    return CumulativeReport(
        lab=LabDetails(name=lab_name),
        patient=patient_details(patient),
        samples=tuple(samples),
        tests=(
            CumulativeTestRow(
                test_name=test.name_en if language == "en" else test.name_nb,
                unit=test.unit or "",
                reference_interval=(
                    _interval(newest.reference_low, newest.reference_high) if newest else None
                ),
                values=tuple(values),
            ),
        ),
        printed_at=printed_at,
        language=language,
    )
