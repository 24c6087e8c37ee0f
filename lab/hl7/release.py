"""Release of held results: orders whose hold time has run out (scheduled, see runtime.py), and
the reports owed for tests that will not be done (withdrawals: cancelled in the lab, specimen
rejected), which are never held.

Safe with several processes: each order is taken with `FOR UPDATE SKIP LOCKED` on its row, the
same lock `outbox.on_result_released` takes, so an order is released by one of them only and
never while a verification of the same order is being committed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.logsafe import describe_failure
from lab.results.outbox import enqueue_withdrawal, release_held
from lab.tables import PendingRelease, Withdrawal
from lab.timeutil import utcnow

log = logging.getLogger(__name__)
# An order held past its due time, locked with its hold (the lock `outbox` takes on the order).
_TAKE = text(
    """
    SELECT o.id FROM lab_order o JOIN hl7_pending_release p ON p.order_id = o.id
    WHERE o.id = :order AND p.due_at <= :now
    FOR UPDATE OF o, p SKIP LOCKED
    """
)


def release_due(
    session_factory: sessionmaker[Session], *, now: datetime | None = None, limit: int = 500
) -> int:
    """Queue an ORU for every order held past its due time; returns how many were queued."""
    now = now or utcnow()
    with session_factory() as session:
        due = list(
            session.scalars(
                select(PendingRelease.order_id)
                .where(PendingRelease.due_at <= now)
                .order_by(PendingRelease.due_at)
                .limit(limit)
            )
        )
        session.commit()
    queued = 0
    for order_id in due:
        # One transaction per order: a failing order is logged and the batch goes on.
        try:
            with session_factory() as session:
                # The order and its hold locked in one statement (both skipped when another
                # process holds either); the release itself is two statements more.
                taken = session.scalar(_TAKE, {"order": order_id, "now": now})
                if taken is None:
                    session.commit()
                    continue  # another process has it, or it was released meanwhile
                if release_held(session, order_id, now=now) is not None:
                    queued += 1
                session.commit()
        except Exception as exc:
            log.error("hl7 release: order %s failed: %s", order_id, describe_failure(exc))
    return queued


def report_withdrawals(
    session_factory: sessionmaker[Session], *, now: datetime | None = None, limit: int = 200
) -> int:
    """Queue the ORU of every withdrawal not reported yet (oldest first); returns how many.

    Each in its own transaction, taken with `FOR UPDATE SKIP LOCKED` so that two processes
    never report the same one; a failing one is logged (without values) and retried next time.
    """
    queued = 0
    failed: list[int] = []  # skipped for the rest of this run, so one bad row blocks nothing
    for _ in range(limit):
        current: int | None = None
        try:
            with session_factory() as session:
                withdrawal = session.scalar(
                    select(Withdrawal)
                    .where(Withdrawal.message_id.is_(None), Withdrawal.id.not_in(failed))
                    .order_by(Withdrawal.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if withdrawal is None:
                    session.commit()
                    return queued
                current = withdrawal.id
                enqueue_withdrawal(session, withdrawal, now=now or utcnow())
                session.commit()
                queued += 1
        except Exception as exc:
            log.error(
                "hl7 release: withdrawal %s could not be reported: %s",
                current,
                describe_failure(exc),
            )
            if current is None:
                return queued  # the database: try again next time
            failed.append(current)
    return queued
