"""Release of held results: orders whose hold time has run out (scheduled, see runtime.py).

Safe with several processes: each order is taken with `FOR UPDATE SKIP LOCKED` on its row, the
same lock `outbox.on_result_released` takes, so an order is released by one of them only and
never while a verification of the same order is being committed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lab.results.outbox import release_order
from lab.tables import Order, PendingRelease
from lab.timeutil import utcnow

log = logging.getLogger(__name__)


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
                order = session.scalar(
                    select(Order).where(Order.id == order_id).with_for_update(skip_locked=True)
                )
                pending = session.get(PendingRelease, order_id, with_for_update=True)
                if order is None or pending is None or pending.due_at > now:
                    session.commit()
                    continue  # another process has it, or it was released meanwhile
                if release_order(session, order, now=now) is not None:
                    queued += 1
                session.commit()
        except Exception:
            log.exception("hl7 release: order %s failed", order_id)
    return queued
