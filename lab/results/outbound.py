"""What the record receives about results: the lab's rows mapped to an ORU^R01.

Pure mapping from the stored order, patient, tests and results to the HL7 values of
`lab.hl7.codec.types` (IHE LTW LAB-3, docs/hl7-interface.md "Outbound"); the codec builds the
message from them. Reads, never writes: queuing the message is `lab.results.outbox`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.catalog.service import ReferenceRange
from lab.config import get_settings
from lab.hl7.codec.types import (
    AbnormalFlag,
    CodedValue,
    EntityId,
    Observation,
    ObservationStatus,
    Patient,
    PatientIdentifier,
    PersonName,
    Provider,
    ReportedSpecimen,
    ResultReport,
    ResultStatus,
    Sex,
    ValueType,
)
from lab.patients.identifiers import IdentifierKind
from lab.tables import (
    LabTest,
    Order,
    OrderedTest,
    Result,
    Specimen,
    WithdrawalKind,
)
from lab.tables import Patient as StoredPatient

SENDING_APPLICATION = "LAB"
# The lab's specimen reject reasons (lab.specimens.service.REJECT_REASONS) as HL7 v2.5.1 table
# 0490 codes for SPM-21. The lab's list reuses some two-letter codes with another meaning, so
# each is mapped by what it means, not by its letters: the lab's `RA` (wrong container or
# additive) is not 0490 `RA` (missing patient ID number), and no 0490 code says "wrong
# container", so it goes as text only (None). A test keeps this map and the lab's list in step.
REJECT_REASON_0490: dict[str, str | None] = {
    "RH": "RH",  # haemolysed -> Hemolysis
    "RC": "RC",  # clotted -> Clotting
    "QS": "QS",  # insufficient volume -> Quantity not sufficient
    "RA": None,  # wrong container or additive: no 0490 code
    "RM": "RM",  # unlabelled or mislabelled -> Labeling
    "RI": "RI",  # identification problem -> Identification problem
    "RB": "RB",  # broken or leaking container -> Broken container
    "EX": "EX",  # too old (transport time exceeded) -> Expired
    "RR": "RR",  # improper storage -> Improper storage
    "RN": "RN",  # contaminated -> Contamination
    "RD": "RD",  # collection time missing -> Missing collection date
}
# Volven OIDs of the Norwegian national identifiers, sent with namespace `NOR` (CX-4).
_NATIONAL_OIDS = {
    IdentifierKind.FNR.value: "2.16.578.1.12.4.1.4.1",
    IdentifierKind.DNR.value: "2.16.578.1.12.4.1.4.2",
    IdentifierKind.HNR.value: "2.16.578.1.12.4.1.4.3",
}
_SEX = {"F": Sex.FEMALE, "M": Sex.MALE, "O": Sex.OTHER, "U": Sex.UNKNOWN}
_FLAGS = {flag.value: flag for flag in AbnormalFlag}


@dataclass(frozen=True, slots=True, kw_only=True)
class TestNames:
    """What an ORU says of a test: its codes and names, and how its value is typed."""

    code: str
    name_nb: str
    name_en: str
    loinc: str | None
    result_type: str

    @classmethod
    def of(cls, test: LabTest) -> TestNames:
        return cls(
            code=test.code,
            name_nb=test.name_nb,
            name_en=test.name_en,
            loinc=test.loinc,
            result_type=test.result_type,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportedValue:
    """One result as an ORU reports it: its current columns and its newest version's range,
    coded comments and comment. Read from the ORM's objects (`of`) or as plain rows by the
    outbox's set-based release: both give the same OBX."""

    test: TestNames
    value_numeric: Decimal | None
    comparator: str | None
    value_text: str | None
    unit: str | None
    flags: tuple[str, ...]
    observed_at: datetime | None
    verified_by: str | None
    reference_low: Decimal | None
    reference_high: Decimal | None
    judgement: Mapping[str, Any] | None
    comment: str

    @classmethod
    def of(cls, result: Result, test: LabTest) -> ReportedValue:
        current = result.versions[-1]
        return cls(
            test=TestNames.of(test),
            value_numeric=result.value_numeric,
            comparator=result.comparator,
            value_text=result.value_text,
            unit=result.unit,
            flags=tuple(result.flags),
            observed_at=result.observed_at,
            verified_by=result.verified_by,
            reference_low=current.reference_low,
            reference_high=current.reference_high,
            judgement=current.judgement,
            comment=current.comment,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderHeading:
    """What every ORU of an order says whatever its results: the order's numbers and
    clinician, its patient, its tests' panels (OBR-4) and when its tubes were collected."""

    placer_order_number: str
    placer_namespace: str
    filler_order_number: str
    ordering_clinician: str
    panels: frozenset[str | None]
    patient: Patient
    collected_at: datetime | None


def patient_of(
    *,
    family_name: str,
    given_name: str,
    birth_date: date | None,
    sex: str,
    identifiers: Iterable[tuple[str, str]],
) -> Patient:
    """PID from the stored patient: its identifiers as (value, authority), in id order."""
    return Patient(
        identifiers=tuple(_identifier(value, authority) for value, authority in identifiers),
        name=PersonName(family=family_name, given=given_name or None),
        birth_date=birth_date,
        sex=_SEX.get(sex),
    )


def build_report(
    session: Session,
    order: Order,
    parts: list[tuple[Result, ObservationStatus]],
    status: ResultStatus,
    *,
    control_id: str,
    now: datetime,
) -> ResultReport:
    patient = session.get(StoredPatient, order.patient_id)
    if patient is None:
        raise LookupError(f"order {order.id} has no patient")
    # The order's tests in one query (not one per ordered test).
    tests = {
        test.id: test
        for test in session.scalars(
            select(LabTest).where(LabTest.id.in_({ordered.test_id for ordered in order.tests}))
        )
    }
    tubes = list(session.scalars(select(Specimen).where(Specimen.order_id == order.id)))
    collected = [tube.collected_at for tube in tubes if tube.collected_at is not None]
    heading = _heading(order, patient, collected_at=min(collected) if collected else None)
    return report_of(
        heading,
        [
            (ReportedValue.of(result, tests[result.test_id]), observation_status)
            for result, observation_status in parts
        ],
        status,
        control_id=control_id,
        now=now,
    )


def report_of(
    heading: OrderHeading,
    parts: Sequence[tuple[ReportedValue, ObservationStatus]],
    status: ResultStatus,
    *,
    control_id: str,
    now: datetime,
) -> ResultReport:
    """The ORU of `parts` (each result with its OBX-11) of the order `heading` names."""
    observations = tuple(
        _observation(value, observation_status) for value, observation_status in parts
    )
    service = _service(heading.panels, [value.test for value, _ in parts])
    return _order_report(
        heading,
        control_id=control_id,
        now=now,
        service=service,
        collected_at=heading.collected_at,
        result_status=status,
        observations=observations,
    )


def _heading(
    order: Order, patient: StoredPatient, *, collected_at: datetime | None
) -> OrderHeading:
    return OrderHeading(
        placer_order_number=order.placer_order_number,
        placer_namespace=order.placer_namespace,
        filler_order_number=order.filler_order_number,
        ordering_clinician=order.ordering_clinician,
        panels=frozenset(test.panel_code for test in order.tests),
        patient=patient_of(
            family_name=patient.family_name,
            given_name=patient.given_name,
            birth_date=patient.birth_date,
            sex=patient.sex,
            identifiers=[(i.value, i.authority) for i in patient.identifiers],
        ),
        collected_at=collected_at,
    )


def _order_report(
    heading: OrderHeading,
    *,
    control_id: str,
    now: datetime,
    service: tuple[CodedValue, CodedValue | None],
    collected_at: datetime | None,
    result_status: ResultStatus,
    observations: tuple[Observation, ...],
    comments: tuple[str, ...] = (),
    specimen: ReportedSpecimen | None = None,
) -> ResultReport:
    """One ORU for one order: the parts every report of an order shares (MSH, PID, OBR
    numbers, service, clinician) around what this report says."""
    return ResultReport(
        control_id=control_id,
        created_at=now,
        sending_application=SENDING_APPLICATION,
        sending_facility=get_settings().lab_name,
        receiving_application=heading.placer_namespace or "EHR",
        receiving_facility="",
        patient=heading.patient,
        placer_order_number=EntityId(
            id=heading.placer_order_number, namespace=heading.placer_namespace
        ),
        filler_order_number=EntityId(id=heading.filler_order_number, namespace=SENDING_APPLICATION),
        service=service[0],
        alternate_service=service[1],
        ordering_provider=_provider(heading.ordering_clinician),
        collected_at=collected_at,
        reported_at=now,
        result_status=result_status,
        observations=observations,
        comments=comments,
        specimen=specimen,
    )


def _identifier(value: str, authority: str) -> PatientIdentifier:
    if authority in _NATIONAL_OIDS:
        return PatientIdentifier(
            id=value,
            assigning_authority="NOR",
            assigning_authority_oid=_NATIONAL_OIDS[authority],
            identifier_type=authority,
        )
    return PatientIdentifier(id=value, assigning_authority=authority, identifier_type="PI")


def _provider(clinician: str) -> Provider | None:
    # Stored by the HL7 handler as `id^family^given^authority` (XCN components).
    parts = ([*clinician.split("^"), "", "", "", ""])[:4]
    if not parts[0]:
        return None
    return Provider(id=parts[0], family=parts[1], given=parts[2], assigning_authority=parts[3])


def _codes(test: TestNames) -> tuple[CodedValue, CodedValue]:
    local = CodedValue(code=test.code, text=test.name_nb, coding_system="L")
    if test.loinc:
        return CodedValue(code=test.loinc, text=test.name_en, coding_system="LN"), local
    return local, local


def _service(
    panels: frozenset[str | None], reported: Iterable[TestNames]
) -> tuple[CodedValue, CodedValue | None]:
    """OBR-4: the panel when the whole order is one, else the test (first reported)."""
    if len(panels) == 1 and None not in panels:
        (panel,) = panels
        return CodedValue(code=str(panel), text=str(panel), coding_system="L"), None
    first = next(iter(reported))
    primary, local = _codes(first)
    return primary, (local if local is not primary else None)


def _observation(result: ReportedValue, status: ObservationStatus) -> Observation:
    loinc, local = _codes(result.test)
    if status in (ObservationStatus.CANNOT_BE_OBTAINED, ObservationStatus.DELETED):
        return Observation(
            loinc=loinc, local=local, value_type=ValueType.STRING, value=None, status=status
        )
    value_type, value = _value(result)
    reference = ReferenceRange(result.reference_low, result.reference_high).text()
    return Observation(
        loinc=loinc,
        local=local,
        value_type=value_type,
        value=value,
        status=status,
        unit=result.unit or "",
        reference_range=reference,
        abnormal_flags=tuple(_FLAGS[flag] for flag in result.flags if flag in _FLAGS),
        observed_at=result.observed_at,
        responsible_observer=Provider(id=result.verified_by) if result.verified_by else None,
        comments=_notes_of(result),
    )


def _notes_of(result: ReportedValue) -> tuple[str, ...]:
    """The OBX's NTEs: the coded comments the rules gave the result (an interference from a
    serum index, `HEM: ...`), then the person's comment."""
    coded = (result.judgement or {}).get("comments", ())
    notes = tuple(f"{comment['code']}: {comment['text']}" for comment in coded)
    return notes + ((result.comment,) if result.comment else ())


def _value(result: ReportedValue) -> tuple[ValueType, Decimal | str | CodedValue]:
    if result.value_numeric is not None:
        if result.comparator:
            # NM cannot carry `<5`; ST keeps it readable as sent by the analyser.
            return ValueType.STRING, f"{result.comparator}{result.value_numeric}"
        return ValueType.NUMERIC, Decimal(result.value_numeric)
    text = result.value_text or ""
    if result.test.result_type == "coded":
        return ValueType.CODED, CodedValue(code=text, text=text, coding_system="L")
    return ValueType.STRING, text


def build_withdrawal_report(
    session: Session,
    order: Order,
    tests: list[OrderedTest],
    *,
    kind: str,
    reason: str,
    reason_code: str,
    specimen: Specimen | None,
    control_id: str,
    now: datetime,
) -> ResultReport:
    """The ORU that tells the record these tests will not be done: OBR-25 `X`, each test an
    OBX with OBX-11 `X` and no value, the reason as a note (NTE) under the OBR, and for a
    rejected specimen an SPM with the table 0490 reason (SPM-21)."""
    patient = session.get(StoredPatient, order.patient_id)
    if patient is None:
        raise LookupError(f"order {order.id} has no patient")
    lab_tests = {
        test.id: test
        for test in session.scalars(
            select(LabTest).where(LabTest.id.in_({ordered.test_id for ordered in tests}))
        )
    }
    withdrawn = [TestNames.of(lab_tests[ordered.test_id]) for ordered in tests]
    observations = tuple(
        Observation(
            loinc=_codes(test)[0],
            local=_codes(test)[1],
            value_type=ValueType.STRING,
            value=None,
            status=ObservationStatus.CANNOT_BE_OBTAINED,
        )
        for test in withdrawn
    )
    service = _service(frozenset(test.panel_code for test in order.tests), withdrawn)
    reported_specimen = None
    note = f"cancelled in the lab: {reason}" if reason else "cancelled in the lab"
    if kind == WithdrawalKind.REJECTED and specimen is not None:
        note = f"specimen {specimen.accession_number} rejected: {reason}; a new specimen is needed"
        reported_specimen = ReportedSpecimen(
            accession_number=specimen.accession_number,
            filler_namespace=SENDING_APPLICATION,
            specimen_type=specimen.specimen_type,
            collected_at=specimen.collected_at,
            received_at=specimen.received_at,
            rejected=True,
            reject_reason=REJECT_REASON_0490.get(reason_code),
            reject_text=reason,
        )
    return _order_report(
        _heading(order, patient, collected_at=None),
        control_id=control_id,
        now=now,
        service=service,
        collected_at=specimen.collected_at if specimen is not None else None,
        result_status=ResultStatus.CANCELLED,
        observations=observations,
        comments=(note,),
        specimen=reported_specimen,
    )
