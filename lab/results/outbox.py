"""The transactional outbox: ORU^R01 messages written in the same transaction as the change.

`results.service.verify`, `correct` and `cancel` call `on_result_released` (docs/architecture.md,
rule 4). Nothing here touches a socket; `lab.hl7.dispatcher` delivers what is queued.

Release policy (docs/hl7-interface.md): a verified result is held, so the record does not get
an order in single components, until the order is complete (every test verified or cancelled)
or `LAB_RELEASE_HOLD_MINUTES` have passed since the first result was held (`lab.hl7.release`
sends those); with 0 every verification goes out at once. A correction goes out at once with
OBX-11 `C`. A cancelled test goes out with the rest of the order as `X` ("results cannot be
obtained"); a result withdrawn after it was reported goes out at once as `D` ("deletes the OBX
record", HL7 table 0085), since the record shows a value that is no longer valid.

Each order's results are serialized by a row lock on the order, so a verification and the
release job never report the same result twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lab.catalog.service import ReferenceRange
from lab.config import get_settings
from lab.hl7.codec.charsets import UTF_8
from lab.hl7.codec.oru import build_oru
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
    ResultReport,
    ResultStatus,
    Sex,
    ValueType,
)
from lab.patients.identifiers import IdentifierKind
from lab.tables import (
    ORDER_CLOSED,
    OUTBOUND,
    REPORTABLE,
    Hl7Message,
    Hl7Status,
    LabTest,
    Order,
    OrderedTest,
    PendingRelease,
    ReportedResult,
    Result,
    Specimen,
)
from lab.tables import Patient as StoredPatient
from lab.tables.results import R
from lab.timeutil import utcnow

SENDING_APPLICATION = "LAB"
# Volven OIDs of the Norwegian national identifiers, sent with namespace `NOR` (CX-4).
_NATIONAL_OIDS = {
    IdentifierKind.FNR.value: "2.16.578.1.12.4.1.4.1",
    IdentifierKind.DNR.value: "2.16.578.1.12.4.1.4.2",
    IdentifierKind.HNR.value: "2.16.578.1.12.4.1.4.3",
}
_SEX = {"F": Sex.FEMALE, "M": Sex.MALE, "O": Sex.OTHER, "U": Sex.UNKNOWN}
_FLAGS = {flag.value: flag for flag in AbnormalFlag}
F, C, X, D = (
    ObservationStatus.FINAL,
    ObservationStatus.CORRECTED,
    ObservationStatus.CANNOT_BE_OBTAINED,
    ObservationStatus.DELETED,
)


def hold_time() -> timedelta:
    return timedelta(minutes=max(get_settings().release_hold_minutes, 0))


def on_result_released(
    session: Session,
    result: Result,
    *,
    event: str,
    now: datetime | None = None,
    hold: timedelta | None = None,
) -> Hl7Message | None:
    """Queue (or hold) what the record must learn from `event` on `result`.

    `event` is `verify`, `correct` or `cancel`; returns the message queued now, if any.
    """
    now = now or utcnow()
    hold = hold_time() if hold is None else hold
    order = _locked_order(session, result)
    if event == "correct":
        return enqueue(session, order, [(result, C)], ResultStatus.CORRECTED, now=now)
    if event == "cancel" and _was_reported(session, result.id):
        return enqueue(session, order, [(result, D)], ResultStatus.CORRECTED, now=now)
    return _release_or_hold(session, order, now=now, hold=hold)


def on_order_verified(
    session: Session, order: Order, *, now: datetime, hold: timedelta | None = None
) -> Hl7Message | None:
    """Results of `order` were verified (by autoverification, for a whole tube at once): queue
    the order's ORU, or hold it by the release policy, as for one verification. The caller
    holds the order's row lock (as `_locked_order` takes it)."""
    return _release_or_hold(session, order, now=now, hold=hold_time() if hold is None else hold)


def _release_or_hold(
    session: Session, order: Order, *, now: datetime, hold: timedelta
) -> Hl7Message | None:
    if hold > timedelta(0) and order.status not in ORDER_CLOSED:
        session.execute(
            insert(PendingRelease)
            .values(order_id=order.id, held_since=now, due_at=now + hold)
            .on_conflict_do_nothing(index_elements=["order_id"])
        )
        return None
    return release_order(session, order, now=now)


def release_order(session: Session, order: Order, *, now: datetime) -> Hl7Message | None:
    """Queue one ORU with every released result of the order not reported yet.

    The caller holds the order's row lock (`_locked_order` or the release job).
    """
    session.execute(delete(PendingRelease).where(PendingRelease.order_id == order.id))
    session.flush()
    ids = [test.id for test in order.tests]
    if not ids:
        return None
    unreported = list(
        session.scalars(
            select(Result)
            .where(
                Result.ordered_test_id.in_(ids),
                Result.status.in_(REPORTABLE),
                ~exists().where(ReportedResult.result_id == Result.id),
            )
            .order_by(Result.id)
        )
    )
    if not unreported:
        return None
    parts = [(result, F if result.status == R.VERIFIED else X) for result in unreported]
    finals = any(status is F for _, status in parts)
    return enqueue(
        session,
        order,
        parts,
        ResultStatus.FINAL if finals else ResultStatus.CANCELLED,
        now=now,
    )


def enqueue(
    session: Session,
    order: Order,
    parts: list[tuple[Result, ObservationStatus]],
    status: ResultStatus,
    *,
    now: datetime,
) -> Hl7Message:
    """Build the ORU^R01 and add it to the outbox in the caller's transaction."""
    row = Hl7Message(
        direction=OUTBOUND,
        status=Hl7Status.QUEUED,
        partner="",
        sending_application=SENDING_APPLICATION,
        sending_facility=get_settings().lab_name[:100],
        control_id="",
        message_type="ORU^R01",
        raw=b"",
        charset=UTF_8,
        error="",
        patient_id=order.patient_id,
        order_id=order.id,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(row)
    session.flush()
    row.control_id = f"LAB-{row.id}"
    report = build_report(session, order, parts, status, control_id=row.control_id, now=now)
    row.raw = build_oru(report).encode()
    for result, observation_status in parts:
        session.add(
            ReportedResult(
                result_id=result.id,
                result_version=result.version,
                observation_status=observation_status.value,
                message_id=row.id,
            )
        )
    session.flush()
    return row


def _locked_order(session: Session, result: Result) -> Order:
    order_id = session.scalar(
        select(OrderedTest.order_id).where(OrderedTest.id == result.ordered_test_id)
    )
    order = session.get(Order, order_id, with_for_update=True, populate_existing=False)
    if order is None:
        raise LookupError(f"result {result.id} belongs to no order")
    return order


def _was_reported(session: Session, result_id: int) -> bool:
    return bool(session.scalar(select(exists().where(ReportedResult.result_id == result_id))))


# --- from the lab's rows to the HL7 values of `lab.hl7.codec.types` -----------------------------


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
        collected_at=min(collected) if collected else None,
        reported_at=now,
        result_status=status,
        observations=observations,
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
    if status in (X, D):
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
        comments=(current.comment,) if current.comment else (),
    )


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
