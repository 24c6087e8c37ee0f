"""Results: one path for every result, whether from an analyser, a keyboard or a replay.

Statuses: preliminary -> awaiting_review -> verified -> corrected, and cancelled. Each change
adds an immutable `ResultVersion`; `Result` keeps the current state for the work queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog.rules import TestRule, rules_by_code
from lab.catalog.service import ReferenceRange
from lab.errors import Conflict, InvalidInput, NotFound
from lab.orders import service as orders
from lab.patients import service as patients
from lab.results import flags as result_flags
from lab.results import outbox as hl7_outbox
from lab.results.queries import is_unremarkable, results_of_tube, value_text
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import (
    OPEN_TEST_STATUSES,
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    ResultVersion,
    Specimen,
    TestStatus,
)
from lab.tables.results import RELEASED, R, ResultStatus
from lab.timeutil import OSLO, as_utc, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """A result as it arrives, before the rules have looked at it."""

    accession_number: str
    test_code: str
    value: str
    unit: str | None = None
    observed_at: datetime | None = None
    preliminary: bool = False
    instrument: str = ""
    operator: str = ""
    instrument_flags: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalNotification:
    """Who was told of a critical result, when, and that the value was read back."""

    notified_person: str
    notified_at: datetime
    read_back: bool

    def text(self) -> str:
        return (
            f"told {self.notified_person} at {as_utc(self.notified_at).isoformat()}, "
            f"read back: {'yes' if self.read_back else 'no'}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What became of one measurement; the ORM row is read only when someone asks for it."""

    result_id: int
    changed: bool  # False when the same result arrived again
    status: str
    flags: list[str]
    session: Session = field(repr=False, compare=False)

    @property
    def result(self) -> Result:
        result = self.session.get(Result, self.result_id)
        if result is None:
            raise NotFound(f"no result {self.result_id}")
        return result


def record(session: Session, *, actor: Actor, measurement: Measurement) -> Outcome:
    """Store a measured result against the specimen's ordered test, flagged for review."""
    return record_tube(session, actor=actor, measurements=[measurement])[0]


def record_tube(
    session: Session, *, actor: Actor, measurements: Sequence[Measurement]
) -> list[Outcome]:
    """Store the results of one tube (what an analyser sends for one specimen) in one go.

    All or nothing: the first measurement the rules refuse raises, and the caller rolls back.
    The tube, its ordered tests (locked, so two connections cannot record the same test at
    once), their current results and the patient are read once, and new results are written
    with one INSERT per table: this is the analysers' hot path.
    """
    if not measurements:
        return []
    numbers = {accession.normalise(m.accession_number) for m in measurements}
    if len(numbers) != 1:
        raise InvalidInput.field("accession_number", "one tube at a time")
    specimen = specimens.get_by_accession(session, measurements[0].accession_number)
    tests = rules_by_code(session, [m.test_code for m in measurements])
    if specimen.status in ("rejected", "disposed"):
        raise Conflict(f"{specimen.accession_number} is {specimen.status}; no results can be added")
    root = specimens.root_of(session, specimen)
    ordered_by_test = {
        t.test_id: t
        for t in session.scalars(
            select(OrderedTest).where(OrderedTest.specimen_id == root.id).with_for_update()
        )
    }
    existing = {
        r.ordered_test_id: r
        for r in session.scalars(
            select(Result).where(
                Result.ordered_test_id.in_([t.id for t in ordered_by_test.values()])
            )
        )
    }
    patient = session.get(Patient, specimen.patient_id)
    if patient is None:
        raise NotFound(f"the patient of {specimen.accession_number} is missing")
    now = utcnow()
    outcomes: list[Outcome | None] = []
    fresh: list[tuple[int, dict[str, Any], dict[str, Any]]] = []  # (index, result, version)
    audits: list[dict[str, Any]] = []
    for measurement in measurements:
        test = tests[measurement.test_code.strip().upper()]
        ordered = ordered_by_test.get(test.id)
        if ordered is None:
            raise NotFound(f"{test.code} is not ordered on {specimen.accession_number}")
        if ordered.status == TestStatus.CANCELLED:
            raise Conflict(f"{test.code} on {specimen.accession_number} was cancelled")
        value = _parse_value(test, measurement.value)
        unit = measurement.unit.strip() if measurement.unit else test.unit
        if test.result_type == "numeric" and unit != test.unit:
            raise InvalidInput.field(
                "unit", f"{test.code} is reported in {test.unit}, not {unit}; no conversion is made"
            )
        status = R.PRELIMINARY if measurement.preliminary else R.AWAITING_REVIEW
        observed_at = as_utc(measurement.observed_at) if measurement.observed_at else None
        result = existing.get(ordered.id)
        if result is not None:
            if result.status in RELEASED:
                raise Conflict(
                    f"{test.code} on {specimen.accession_number} is verified; correct it instead"
                )
            if result.status == R.CANCELLED:
                raise Conflict(f"{test.code} on {specimen.accession_number} is cancelled")
            if _same_measurement(
                result.versions[-1], value, unit, observed_at, measurement, status
            ):
                outcomes.append(_outcome(session, result, changed=False))
                continue
        low, high, flags = _judge(test, patient, root, value)
        numeric = value if isinstance(value, result_flags.NumericValue) else None
        version_fields: dict[str, Any] = {
            "status": status,
            "value_numeric": numeric.value if numeric else None,
            "value_text": None if numeric else value,
            "comparator": numeric.comparator if numeric else None,
            "unit": unit,
            "flags": flags,
            "reference_low": low,
            "reference_high": high,
            "instrument_flags": measurement.instrument_flags,
            "instrument": measurement.instrument,
            "operator": measurement.operator,
            "observed_at": observed_at,
            "author": actor.username,
            "reason": "rerun" if result is not None else "",
            "comment": measurement.comment,
            "critical_notification": "",
        }
        ordered.status = TestStatus.IN_PROGRESS if measurement.preliminary else TestStatus.RESULTED
        if result is not None:
            before = _snapshot(result)
            _apply(result, ResultVersion(**version_fields))
            result.recorded_at = now
            audits.append(_audit_row(actor, result.id, result.patient_id, before, result))
            outcomes.append(_outcome(session, result, changed=True))
            continue
        row = {
            "ordered_test_id": ordered.id,
            "specimen_id": specimen.id,
            "test_id": test.id,
            "patient_id": specimen.patient_id,
            "urgency": root.urgency,
            "version": 1,
            "status": status,
            "value_numeric": version_fields["value_numeric"],
            "value_text": version_fields["value_text"],
            "comparator": version_fields["comparator"],
            "unit": unit,
            "flags": flags,
            "observed_at": observed_at,
            "recorded_at": now,
        }
        fresh.append((len(outcomes), row, version_fields))
        outcomes.append(None)
    if fresh:
        ids = session.scalars(
            insert(Result).returning(Result.id, sort_by_parameter_order=True),
            [row for _, row, _ in fresh],
        ).all()
        session.execute(
            insert(ResultVersion),
            [
                {**fields, "result_id": result_id, "version": 1, "created_at": now}
                for result_id, (_, _, fields) in zip(ids, fresh, strict=True)
            ],
        )
        for result_id, (index, row, _) in zip(ids, fresh, strict=True):
            audits.append(_audit_row(actor, result_id, row["patient_id"], None, row))
            outcomes[index] = Outcome(
                result_id=result_id,
                changed=True,
                status=row["status"],
                flags=row["flags"],
                session=session,
            )
    if audits:
        audit.record_rows(session, audits)
        open_tests = sum(1 for t in ordered_by_test.values() if t.status in OPEN_TEST_STATUSES)
        specimens.note_result(session, actor=actor, specimen=root, open_tests=open_tests)
    return [outcome for outcome in outcomes if outcome is not None]


def _outcome(session: Session, result: Result, *, changed: bool) -> Outcome:
    return Outcome(
        result_id=result.id,
        changed=changed,
        status=result.status,
        flags=list(result.flags),
        session=session,
    )


def _audit_row(
    actor: Actor,
    result_id: int,
    patient_id: int,
    before: dict[str, object] | None,
    after: Result | dict[str, Any],
) -> dict[str, Any]:
    state = _snapshot(after) if isinstance(after, Result) else _row_snapshot(after)
    return audit.row(
        actor=actor,
        action="result.record",
        entity_type="result",
        entity_id=result_id,
        patient_id=patient_id,
        before=before,
        after=state,
    )


def _row_snapshot(row: dict[str, Any]) -> dict[str, object]:
    numeric = row["value_numeric"]
    value = f"{row['comparator'] or ''}{numeric}" if numeric is not None else row["value_text"]
    return {
        "version": row["version"],
        "status": row["status"],
        "value": value or "",
        "unit": row["unit"],
        "flags": list(row["flags"]),
    }


def verify(
    session: Session,
    *,
    actor: Actor,
    result_id: int,
    critical: CriticalNotification | None = None,
    comment: str = "",
) -> Result:
    """Release a result. A critical result needs the documented call first."""
    result = _locked(session, result_id)
    if result.status in RELEASED:
        raise Conflict(f"result {result.id} was verified already by {result.verified_by}")
    if result.status == R.PRELIMINARY:
        raise Conflict(f"result {result.id} is preliminary; wait for the final result")
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled")
    if result_flags.is_critical(result.flags):
        if critical is None:
            raise InvalidInput.field(
                "critical",
                "a critical result cannot be released before the call is documented "
                "(who was told, when, and that the value was read back)",
            )
        if not critical.read_back or not critical.notified_person.strip():
            raise InvalidInput.field(
                "critical", "the person told must be named and the value read back"
            )
    current = result.versions[-1]
    before = _snapshot(result)
    version = _copy(current, status=R.VERIFIED, author=actor.username, comment=comment)
    if critical is not None:
        version.critical_notification = critical.text()
    _apply(result, version)
    result.verified_at = utcnow()
    result.verified_by = actor.username
    _mark_ordered_test(session, result, TestStatus.VERIFIED)
    _audit_change(
        session, actor, "result.verify", result, before, detail=version.critical_notification
    )
    hl7_outbox.on_result_released(session, result, event="verify")  # same transaction
    return result


def verify_unremarkable(session: Session, *, actor: Actor, accession_number: str) -> list[Result]:
    """Verify every result of a specimen that awaits review and carries no flag at all."""
    specimen = specimens.get_by_accession(session, accession_number)
    verified = []
    for result in results_of_tube(session, specimen):
        if result.status != R.AWAITING_REVIEW:
            continue
        if not is_unremarkable(result):
            continue
        verified.append(verify(session, actor=actor, result_id=result.id))
    return verified


def correct(
    session: Session, *, actor: Actor, result_id: int, value: str, reason: str, comment: str = ""
) -> Result:
    """Correct a released result: a new version, flagged afresh, sent to the record as `C`."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a correction needs a reason")
    result = _locked(session, result_id)
    if result.status not in RELEASED:
        raise Conflict(
            f"result {result.id} is {result.status}; only released results are corrected"
        )
    test = session.get(LabTest, result.test_id)
    specimen = session.get(Specimen, result.specimen_id)
    patient = session.get(Patient, result.patient_id)
    assert test is not None and specimen is not None and patient is not None  # foreign keys
    rule = TestRule.of(test)
    parsed = _parse_value(rule, value)
    low, high, flags = _judge(rule, patient, specimen, parsed)
    before = _snapshot(result)
    version = _copy(result.versions[-1], status=R.CORRECTED, author=actor.username, comment=comment)
    version.reason = reason
    version.value_numeric = parsed.value if isinstance(parsed, result_flags.NumericValue) else None
    version.comparator = (
        parsed.comparator if isinstance(parsed, result_flags.NumericValue) else None
    )
    version.value_text = parsed if isinstance(parsed, str) else None
    version.flags, version.reference_low, version.reference_high = flags, low, high
    version.critical_notification = ""
    _apply(result, version)
    result.verified_at = utcnow()
    result.verified_by = actor.username
    _audit_change(session, actor, "result.correct", result, before, detail=reason)
    hl7_outbox.on_result_released(session, result, event="correct")  # same transaction
    return result


def cancel(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Withdraw a result (e.g. the specimen proved unusable); a released one is retracted."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a cancellation needs a reason")
    result = _locked(session, result_id)
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled already")
    before = _snapshot(result)
    version = _copy(result.versions[-1], status=R.CANCELLED, author=actor.username, comment="")
    version.reason = reason
    _apply(result, version)
    _mark_ordered_test(session, result, TestStatus.CANCELLED)
    _audit_change(session, actor, "result.cancel", result, before, detail=reason)
    hl7_outbox.on_result_released(session, result, event="cancel")  # same transaction
    return result


def _parse_value(test: TestRule, text: str) -> result_flags.NumericValue | str:
    if not text.strip():
        raise InvalidInput.field("value", "the value is empty")
    if test.result_type == "numeric":
        try:
            return result_flags.parse_numeric(text)
        except ValueError:
            raise InvalidInput.field(
                "value", f"{test.code} takes a number (e.g. 5,2 or <5), not {text!r}"
            ) from None
    if (
        test.result_type == "coded"
        and test.allowed_codes
        and text.strip() not in test.allowed_codes
    ):
        raise InvalidInput.field(
            "value", f"{test.code} takes one of {', '.join(test.allowed_codes)}"
        )
    return text.strip()


def reference_for(
    test: TestRule | LabTest, patient: Patient, specimen: Specimen
) -> ReferenceRange | None:
    """The reference interval that applies: the patient's sex and age on the (Oslo) day the
    specimen was collected, or today when that is not known."""
    on = (specimen.collected_at or utcnow()).astimezone(OSLO).date()
    return catalog.reference_range(
        test, sex=patient.sex, age_days=patients.age_in_days(patient, on)
    )


def _judge(
    test: TestRule, patient: Patient, specimen: Specimen, value: result_flags.NumericValue | str
) -> tuple[Decimal | None, Decimal | None, list[str]]:
    if not isinstance(value, result_flags.NumericValue):
        return None, None, []
    interval = reference_for(test, patient, specimen)
    low = interval.low if interval else None
    high = interval.high if interval else None
    flags = result_flags.compute(
        value, low=low, high=high, critical_low=test.critical_low, critical_high=test.critical_high
    )
    return low, high, flags


def _same_measurement(
    current: ResultVersion,
    value: result_flags.NumericValue | str,
    unit: str | None,
    observed_at: datetime | None,
    measurement: Measurement,
    status: ResultStatus,
) -> bool:
    """A repeated transmission of the same result (same value, time and analyser)."""
    if isinstance(value, result_flags.NumericValue):
        same_value = current.value_numeric == value.value and current.comparator == value.comparator
    else:
        same_value = current.value_text == value
    return (
        same_value
        and current.unit == unit
        and current.observed_at == observed_at
        and current.instrument == measurement.instrument
        and current.status == status
    )


def _locked(session: Session, result_id: int) -> Result:
    result = session.get(Result, result_id, with_for_update=True)
    if result is None:
        raise NotFound(f"no result {result_id}")
    return result


def _copy(
    current: ResultVersion, *, status: ResultStatus, author: str, comment: str
) -> ResultVersion:
    return ResultVersion(
        status=status,
        value_numeric=current.value_numeric,
        value_text=current.value_text,
        comparator=current.comparator,
        unit=current.unit,
        flags=list(current.flags),
        reference_low=current.reference_low,
        reference_high=current.reference_high,
        instrument_flags=current.instrument_flags,
        instrument=current.instrument,
        operator=current.operator,
        observed_at=current.observed_at,
        author=author,
        reason="",
        comment=comment or current.comment,
        critical_notification=current.critical_notification,
    )


def _apply(result: Result, version: ResultVersion) -> None:
    """Append the version and copy its state onto the result row.

    `recorded_at` stays the time of the latest measurement: the review queue and the previous
    result are ordered by it, so a verification or correction must not move it.
    """
    result.version += 1
    version.version = result.version
    result.versions.append(version)
    result.status = version.status
    result.value_numeric = version.value_numeric
    result.value_text = version.value_text
    result.comparator = version.comparator
    result.unit = version.unit
    result.flags = list(version.flags)
    result.observed_at = version.observed_at


def _mark_ordered_test(session: Session, result: Result, status: str) -> None:
    ordered = session.get(OrderedTest, result.ordered_test_id)
    if ordered is None:
        return
    ordered.status = status
    order = session.get(Order, ordered.order_id)
    if order is not None:
        orders.refresh_status(order)


def _audit_change(
    session: Session,
    actor: Actor,
    action: str,
    result: Result,
    before: dict[str, object],
    *,
    detail: str,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="result",
        entity_id=result.id,
        patient_id=result.patient_id,
        before=before,
        after=_snapshot(result),
        detail=detail,
    )


def _snapshot(result: Result) -> dict[str, object]:
    return {
        "version": result.version,
        "status": result.status,
        "value": value_text(result),
        "unit": result.unit,
        "flags": list(result.flags),
    }
