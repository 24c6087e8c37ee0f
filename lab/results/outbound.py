"""What the record receives about results: the lab's rows mapped to an ORU^R01.

Pure mapping from the stored order, patient, tests and results to the HL7 values of
`lab.hl7.codec.types` (IHE LTW LAB-3, docs/hl7-interface.md "Outbound"); the codec builds the
message from them. Reads, never writes: queuing the message is `lab.results.outbox`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

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
    ResultVersion,
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
    observations = tuple(
        _observation(result, tests[result.test_id], observation_status)
        for result, observation_status in parts
    )
    service = _service(order, [tests[result.test_id] for result, _ in parts])
    return _order_report(
        order,
        patient,
        control_id=control_id,
        now=now,
        service=service,
        collected_at=min(collected) if collected else None,
        result_status=status,
        observations=observations,
    )


def _order_report(
    order: Order,
    patient: StoredPatient,
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
        receiving_application=order.placer_namespace or "EHR",
        receiving_facility="",
        patient=_patient(patient),
        placer_order_number=EntityId(
            id=order.placer_order_number, namespace=order.placer_namespace
        ),
        filler_order_number=EntityId(id=order.filler_order_number, namespace=SENDING_APPLICATION),
        service=service[0],
        alternate_service=service[1],
        ordering_provider=_provider(order.ordering_clinician),
        collected_at=collected_at,
        reported_at=now,
        result_status=result_status,
        observations=observations,
        comments=comments,
        specimen=specimen,
    )


def _patient(patient: StoredPatient) -> Patient:
    identifiers = tuple(
        PatientIdentifier(
            id=identifier.value,
            assigning_authority="NOR" if identifier.authority in _NATIONAL_OIDS else "",
            assigning_authority_oid=_NATIONAL_OIDS.get(identifier.authority, ""),
            identifier_type=identifier.authority
            if identifier.authority in _NATIONAL_OIDS
            else "PI",
        )
        if identifier.authority in _NATIONAL_OIDS
        else PatientIdentifier(
            id=identifier.value, assigning_authority=identifier.authority, identifier_type="PI"
        )
        for identifier in patient.identifiers
    )
    return Patient(
        identifiers=identifiers,
        name=PersonName(family=patient.family_name, given=patient.given_name or None),
        birth_date=patient.birth_date,
        sex=_SEX.get(patient.sex),
    )


def _provider(clinician: str) -> Provider | None:
    # Stored by the HL7 handler as `id^family^given^authority` (XCN components).
    parts = ([*clinician.split("^"), "", "", "", ""])[:4]
    if not parts[0]:
        return None
    return Provider(id=parts[0], family=parts[1], given=parts[2], assigning_authority=parts[3])


def _codes(test: LabTest) -> tuple[CodedValue, CodedValue]:
    local = CodedValue(code=test.code, text=test.name_nb, coding_system="L")
    if test.loinc:
        return CodedValue(code=test.loinc, text=test.name_en, coding_system="LN"), local
    return local, local


def _service(order: Order, reported: Iterable[LabTest]) -> tuple[CodedValue, CodedValue | None]:
    """OBR-4: the panel when the whole order is one, else the test (first reported)."""
    panels = {test.panel_code for test in order.tests}
    if len(panels) == 1 and None not in panels:
        (panel,) = panels
        return CodedValue(code=str(panel), text=str(panel), coding_system="L"), None
    first = next(iter(reported))
    primary, local = _codes(first)
    return primary, (local if local is not primary else None)


def _observation(result: Result, test: LabTest, status: ObservationStatus) -> Observation:
    loinc, local = _codes(test)
    current = result.versions[-1]
    if status in (ObservationStatus.CANNOT_BE_OBTAINED, ObservationStatus.DELETED):
        return Observation(
            loinc=loinc, local=local, value_type=ValueType.STRING, value=None, status=status
        )
    value_type, value = _value(result, test)
    reference = ReferenceRange(current.reference_low, current.reference_high).text()
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
        comments=_notes_of(current),
    )


def _notes_of(version: ResultVersion) -> tuple[str, ...]:
    """The OBX's NTEs: the coded comments the rules gave the result (an interference from a
    serum index, `HEM: ...`), then the person's comment."""
    coded = (version.judgement or {}).get("comments", ())
    notes = tuple(f"{comment['code']}: {comment['text']}" for comment in coded)
    return notes + ((version.comment,) if version.comment else ())


def _value(result: Result, test: LabTest) -> tuple[ValueType, Decimal | str | CodedValue]:
    if result.value_numeric is not None:
        if result.comparator:
            # NM cannot carry `<5`; ST keeps it readable as sent by the analyser.
            return ValueType.STRING, f"{result.comparator}{result.value_numeric}"
        return ValueType.NUMERIC, Decimal(result.value_numeric)
    text = result.value_text or ""
    if test.result_type == "coded":
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
    withdrawn = [lab_tests[ordered.test_id] for ordered in tests]
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
    service = _service(order, withdrawn)
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
        order,
        patient,
        control_id=control_id,
        now=now,
        service=service,
        collected_at=specimen.collected_at if specimen is not None else None,
        result_status=ResultStatus.CANCELLED,
        observations=observations,
        comments=(note,),
        specimen=reported_specimen,
    )
