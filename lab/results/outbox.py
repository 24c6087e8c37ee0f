"""The transactional outbox: ORU^R01 messages written in the same transaction as the change.

`results.service.verify`, `correct` and `cancel` call `on_result_released` (docs/architecture.md,
rule 4). Nothing here touches a socket; `lab.hl7.dispatcher` delivers what is queued.

Release policy (docs/hl7-interface.md): a verified result is held, so the record does not get
an order in single components, until the order is complete (every test verified or cancelled)
or `LAB_RELEASE_HOLD_MINUTES` have passed since the first result was held (`lab.hl7.release`
sends those); with 0 every verification goes out at once. A correction goes out at once with
OBX-11 `C`. A test that will not be done goes out at once as `X` ("results cannot be obtained")
with OBR-25 `X`: a result cancelled before it was reported, tests cancelled in the lab and
tests whose specimen was rejected (`enqueue_withdrawal`, with the table 0490 reason in SPM-21);
a result withdrawn after it was reported goes out at once as `D` ("deletes the OBX record", HL7
table 0085), since the record shows a value that is no longer valid.

Each order's results are serialized by a row lock on the order, so a verification and the
release job never report the same result twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lab.config import get_settings
from lab.hl7.codec.charsets import UTF_8
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import (
    ObservationStatus,
    ResultStatus,
)
from lab.results.outbound import SENDING_APPLICATION, build_report, build_withdrawal_report
from lab.tables import (
    ORDER_CLOSED,
    OUTBOUND,
    REPORTABLE,
    Hl7Message,
    Hl7Status,
    Order,
    OrderedTest,
    PendingRelease,
    ReportedResult,
    Result,
    Specimen,
    Withdrawal,
)
from lab.tables.results import R
from lab.timeutil import utcnow

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
    if event == "cancel":
        # A test that will not be done goes at once, not held by the release policy: the ward
        # must learn that a new specimen or a new order is needed. When it was the order's last
        # open test, the held rest of the order goes with it in one ORU.
        if order.status in ORDER_CLOSED:
            return release_order(session, order, now=now)
        return enqueue(session, order, [(result, X)], ResultStatus.CANCELLED, now=now)
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
    row = _outbox_row(session, order, now=now)
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


def enqueue_withdrawal(session: Session, withdrawal: Withdrawal, *, now: datetime) -> Hl7Message:
    """Queue the ORU for tests cancelled in the lab or left without a specimen by a rejection
    (OBR-25 `X`, the reason, SPM-21 for a rejected specimen), at once: never held by the
    release policy. The caller holds the withdrawal's row lock; the order's is taken here."""
    order = session.get(Order, withdrawal.order_id, with_for_update=True)
    if order is None:
        raise LookupError(f"withdrawal {withdrawal.id} belongs to no order")
    tests = list(
        session.scalars(
            select(OrderedTest)
            .where(OrderedTest.id.in_(withdrawal.ordered_test_ids))
            .order_by(OrderedTest.id)
        )
    )
    specimen = (
        session.get(Specimen, withdrawal.specimen_id)
        if withdrawal.specimen_id is not None
        else None
    )
    row = _outbox_row(session, order, now=now)
    report = build_withdrawal_report(
        session,
        order,
        tests,
        kind=withdrawal.kind,
        reason=withdrawal.reason,
        reason_code=withdrawal.reason_code,
        specimen=specimen,
        control_id=row.control_id,
        now=now,
    )
    row.raw = build_oru(report).encode()
    withdrawal.message_id = row.id
    session.flush()
    if order.status in ORDER_CLOSED:
        # Nothing else will happen to the order: results held by the release policy go now.
        release_order(session, order, now=now)
    return row


def _outbox_row(session: Session, order: Order, *, now: datetime) -> Hl7Message:
    """A new outbound row with its control ID (`LAB-<id>`); the caller fills `raw`."""
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
