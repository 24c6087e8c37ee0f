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

Releasing an order (`release_order`, `release_autoverified`, and holding it by the policy) is
set-based: one statement refreshes the order's status, holds the order or lifts its hold, and
reads everything its ORU says as plain rows; the ORU is built once from them
(`outbound.report_of`, the same mapping the ORM's path uses) and one more statement writes the
message and which result versions it reports. No ORM unit of work, whatever the number of
results. An analyser's tube of autoverified results costs one or two statements beside its
recording: the order's lock rides in the tube's write (`writing.write_versions`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from lab.config import get_settings
from lab.hl7.codec.charsets import UTF_8
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import (
    ObservationStatus,
    ResultStatus,
)
from lab.results.outbound import (
    SENDING_APPLICATION,
    OrderHeading,
    ReportedValue,
    TestNames,
    build_report,
    build_withdrawal_report,
    patient_of,
    report_of,
)
from lab.results.writing import forget_changed
from lab.tables import (
    ORDER_CLOSED,
    ORDER_LIFECYCLE,
    OUTBOUND,
    REPORTABLE,
    TEST_CLOSED,
    Hl7Message,
    Hl7Status,
    Order,
    OrderedTest,
    OrderStatus,
    ReportedResult,
    Result,
    Specimen,
    TestStatus,
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
) -> int | None:
    """Queue (or hold) what the record must learn from `event` on `result`.

    `event` is `verify`, `correct` or `cancel`; returns the id of the message queued now, if
    any.
    """
    now = now or utcnow()
    hold = hold_time() if hold is None else hold
    order = _locked_order(session, result)
    if event == "correct":
        return enqueue(session, order, [(result, C)], ResultStatus.CORRECTED, now=now).id
    if event == "cancel" and _was_reported(session, result.id):
        return enqueue(session, order, [(result, D)], ResultStatus.CORRECTED, now=now).id
    if event == "cancel":
        # A test that will not be done goes at once, not held by the release policy: the ward
        # must learn that a new specimen or a new order is needed. When it was the order's last
        # open test, the held rest of the order goes with it in one ORU.
        if order.status in ORDER_CLOSED:
            return release_order(session, order, now=now)
        return enqueue(session, order, [(result, X)], ResultStatus.CANCELLED, now=now).id
    return _release_or_hold(session, order, now=now, hold=hold)


def _release_or_hold(
    session: Session, order: Order, *, now: datetime, hold: timedelta
) -> int | None:
    session.flush()  # the order's status as the verification left it
    return _release(session, order.id, now=now, hold=hold, refresh=False)


def release_order(session: Session, order: Order, *, now: datetime) -> int | None:
    """Queue one ORU with every released result of the order not reported yet; returns the
    message's id, None when nothing was left to report.

    The caller holds the order's row lock (`_locked_order` or the release job).
    """
    session.flush()  # the caller's changes, before the statement reads them
    return _release(session, order.id, now=now, hold=None, refresh=False)


def release_held(session: Session, order_id: int, *, now: datetime) -> int | None:
    """`release_order` by the order's id, for the release job, which holds the order's lock."""
    return _release(session, order_id, now=now, hold=None, refresh=False)


def release_autoverified(session: Session, order_id: int, *, now: datetime) -> int | None:
    """Results of the order were verified by autoverification (a whole tube at once): refresh
    the order's status and queue its ORU, or hold it by the release policy, as for one
    verification. Returns the id of the message queued, if any.

    The caller has locked the order's row in an earlier statement of this transaction
    (`writing.write_versions(lock_order=...)`), so this one sees every other tube of the order
    as committed: two tubes of one order recorded at once never both leave it held.
    """
    session.flush()
    return _release(session, order_id, now=now, hold=hold_time(), refresh=True)


# One statement decides and reads, one writes: the order's status refreshed (as
# `orders.service.refresh_status` decides it, here over the order's tests in SQL), the order
# held by the release policy or its hold lifted, and, when it goes, everything its ORU says (the
# order, the patient and identifiers, the panels, when the tubes were collected, and each
# released result not reported yet with its newest version), with the new message's id.
# The statuses are bound as parameters; only the tables' own names are in the text.
_SETTLE = """
WITH o AS (
    SELECT id, status, patient_id, placer_order_number, placer_namespace, filler_order_number,
           ordering_clinician
    FROM lab_order WHERE id = %(order)s
),
tests AS (SELECT id, status, panel_code FROM ordered_test WHERE order_id = %(order)s),
decided AS (
    SELECT o.id, o.status AS was,
           CASE WHEN NOT %(refresh)s THEN o.status
                WHEN count(t.id) > 0 AND bool_and(t.status = %(test_cancelled)s)
                    THEN %(order_cancelled)s
                WHEN coalesce(bool_and(t.status = ANY(%(test_closed)s)), true)
                    THEN %(order_completed)s
                ELSE %(order_active)s END AS status
    FROM o LEFT JOIN tests t ON true
    GROUP BY o.id, o.status
),
going AS (
    SELECT id, status, was, NOT (%(hold)s AND status <> ALL(%(order_closed)s)) AS release
    FROM decided
),
moved AS (
    UPDATE lab_order SET status = going.status FROM going
    WHERE lab_order.id = %(order)s AND lab_order.status <> going.status
    RETURNING lab_order.id
),
held AS (
    INSERT INTO hl7_pending_release (order_id, held_since, due_at)
    SELECT id, %(now)s, %(due)s FROM going WHERE NOT release
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id
),
unheld AS (
    -- By the key itself (not joined): the table holds every order waiting for its hold.
    DELETE FROM hl7_pending_release
    WHERE order_id = %(order)s AND (SELECT release FROM going)
    RETURNING order_id
),
unreported AS (
    SELECT r.id, r.version, r.status, r.value_numeric, r.comparator, r.value_text, r.unit,
           r.flags, r.observed_at, r.verified_by, v.reference_low, v.reference_high,
           v.judgement, v.comment, lt.code, lt.name_nb, lt.name_en, lt.loinc, lt.result_type
    FROM going
    JOIN tests ON going.release
    JOIN result r ON r.ordered_test_id = tests.id
    JOIN lab_test lt ON lt.id = r.test_id
    CROSS JOIN LATERAL (
        SELECT reference_low, reference_high, judgement, comment FROM result_version
        WHERE result_id = r.id ORDER BY version DESC LIMIT 1
    ) v
    WHERE r.status = ANY(%(reportable)s)
      AND NOT EXISTS (SELECT FROM hl7_reported_result rr WHERE rr.result_id = r.id)
),
message AS (SELECT nextval('hl7_message_id_seq') AS id WHERE EXISTS (SELECT FROM unreported)),
heading AS (
    SELECT p.family_name, p.given_name, p.birth_date, p.sex,
           ARRAY(SELECT i.value FROM patient_identifier i WHERE i.patient_id = p.id
                 ORDER BY i.id) AS identifiers,
           ARRAY(SELECT i.authority FROM patient_identifier i WHERE i.patient_id = p.id
                 ORDER BY i.id) AS authorities,
           ARRAY(SELECT DISTINCT panel_code FROM tests) AS panels,
           (SELECT min(s.collected_at) FROM specimen s WHERE s.order_id = o.id) AS collected_at
    FROM o JOIN patient p ON p.id = o.patient_id
    WHERE EXISTS (SELECT FROM message)
)
SELECT going.was, going.status, message.id, o.patient_id, o.placer_order_number,
       o.placer_namespace, o.filler_order_number, o.ordering_clinician,
       heading.family_name, heading.given_name, heading.birth_date, heading.sex,
       heading.identifiers, heading.authorities, heading.panels, heading.collected_at,
       u.id, u.version, u.status, u.value_numeric, u.comparator, u.value_text, u.unit,
       u.flags, u.observed_at, u.verified_by, u.reference_low, u.reference_high, u.judgement,
       u.comment, u.code, u.name_nb, u.name_en, u.loinc, u.result_type
FROM going
JOIN o ON o.id = going.id
LEFT JOIN message ON true
LEFT JOIN heading ON true
LEFT JOIN unreported u ON message.id IS NOT NULL
ORDER BY u.id
"""
_QUEUE = """
WITH message AS (
    INSERT INTO hl7_message (id, direction, status, partner, sending_application,
                             sending_facility, control_id, message_type, raw, charset, error,
                             patient_id, order_id, attempts, next_attempt_at)
    VALUES (%(id)s, %(direction)s, %(status)s, '', %(application)s, %(facility)s, %(control)s,
            %(type)s, %(raw)s, %(charset)s, '', %(patient)s, %(order)s, 0, %(now)s)
    RETURNING id
)
INSERT INTO hl7_reported_result (result_id, result_version, observation_status, message_id)
SELECT x.result_id, x.version, x.observation_status, message.id
FROM message, unnest(CAST(%(results)s AS bigint[]), CAST(%(versions)s AS int[]),
                     CAST(%(observations)s AS text[])) AS x(result_id, version, observation_status)
"""


def _release(
    session: Session, order_id: int, *, now: datetime, hold: timedelta | None, refresh: bool
) -> int | None:
    """`_SETTLE`, then (when the order goes and something is left to report) the ORU built
    from its rows and `_QUEUE`: two statements, whatever the number of results."""
    hold = hold or timedelta(0)
    connection = session.connection()
    rows = connection.exec_driver_sql(
        _SETTLE,
        {
            "order": order_id,
            "refresh": refresh,
            "hold": hold > timedelta(0),
            "now": now,
            "due": now + hold,
            "test_cancelled": TestStatus.CANCELLED.value,
            "test_closed": sorted(TEST_CLOSED),
            "order_cancelled": OrderStatus.CANCELLED.value,
            "order_completed": OrderStatus.COMPLETED.value,
            "order_active": OrderStatus.ACTIVE.value,
            "order_closed": sorted(ORDER_CLOSED),
            "reportable": sorted(REPORTABLE),
        },
    ).all()
    if not rows:
        raise LookupError(f"order {order_id} does not exist")
    head = rows[0]
    was, status, message_id = head[0], head[1], head[2]
    if status != was:
        ORDER_LIFECYCLE.check(was, status, name=f"order {head[6]}")  # raising rolls it back
        # An ORM copy of the order in this session reads the status the statement wrote.
        forget_changed(session, Order, [order_id], ["status"])
    if message_id is None:
        return None
    heading = OrderHeading(
        placer_order_number=head[4],
        placer_namespace=head[5],
        filler_order_number=head[6],
        ordering_clinician=head[7],
        panels=frozenset(head[14]),
        patient=patient_of(
            family_name=head[8],
            given_name=head[9],
            birth_date=head[10],
            sex=head[11],
            identifiers=zip(head[12], head[13], strict=True),
        ),
        collected_at=head[15],
    )
    parts = [
        (
            ReportedValue(
                test=TestNames(
                    code=row[30],
                    name_nb=row[31],
                    name_en=row[32],
                    loinc=row[33],
                    result_type=row[34],
                ),
                value_numeric=row[19],
                comparator=row[20],
                value_text=row[21],
                unit=row[22],
                flags=tuple(row[23]),
                observed_at=row[24],
                verified_by=row[25],
                reference_low=row[26],
                reference_high=row[27],
                judgement=row[28],
                comment=row[29],
            ),
            F if row[18] == R.VERIFIED else X,
        )
        for row in rows
    ]
    finals = any(observation is F for _, observation in parts)
    control_id = f"LAB-{message_id}"
    report = report_of(
        heading,
        parts,
        ResultStatus.FINAL if finals else ResultStatus.CANCELLED,
        control_id=control_id,
        now=now,
    )
    connection.exec_driver_sql(
        _QUEUE,
        {
            "id": message_id,
            "direction": OUTBOUND,
            "status": Hl7Status.QUEUED.value,
            "application": SENDING_APPLICATION,
            "facility": get_settings().lab_name[:100],
            "control": control_id,
            "type": "ORU^R01",
            "raw": build_oru(report).encode(),
            "charset": UTF_8,
            "patient": head[3],
            "order": order_id,
            "now": now,
            "results": [row[16] for row in rows],
            "versions": [row[17] for row in rows],
            "observations": [observation.value for _, observation in parts],
        },
    )
    return int(message_id)


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
