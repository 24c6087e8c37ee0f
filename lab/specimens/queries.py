"""The work lists: what waits to be received, what is in the lab, what each bench must run.

Read-only and without patient data (tubes and tests only). Each list is a range scan of a
partial index made by migration 0006 (`specimen.urgency`, `ordered_test.due_at`), so it costs
the same with a hundred open tubes or a hundred thousand.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab.catalog.rules import snapshot
from lab.tables import (
    SPECIMEN_FINISHED,
    SPECIMEN_IN_LAB,
    SPECIMEN_NOT_YET_IN_LAB,
    TEST_OPEN,
    TEST_PENDING,
    Order,
    OrderedTest,
    OrderStatus,
    Specimen,
)

PRIORITY_OF_URGENCY = {0: "stat", 1: "urgent", 2: "routine"}


def awaiting_receipt(session: Session, *, limit: int = 50) -> list[tuple[Specimen, Order]]:
    """Specimens expected or collected but not received: stat, then urgent, then oldest first."""
    query = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_NOT_YET_IN_LAB), Order.status == OrderStatus.ACTIVE)
        .order_by(Specimen.urgency, Specimen.created_at, Specimen.id)
        .limit(limit)
    )
    return [(specimen, order) for specimen, order in session.execute(query).tuples()]


def awaiting_receipt_counts(session: Session) -> dict[str, int]:
    """How many specimens are expected but not received, per priority."""
    query = (
        select(Specimen.urgency, func.count())
        .where(Specimen.status.in_(SPECIMEN_NOT_YET_IN_LAB))
        .group_by(Specimen.urgency)
    )
    return {
        PRIORITY_OF_URGENCY.get(urgency, "routine"): count
        for urgency, count in session.execute(query).tuples()
    }


def in_lab_unfinished(session: Session, *, limit: int = 50) -> list[tuple[Specimen, Order]]:
    """Specimens received but not finished: stat first, then the longest in the lab."""
    query = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_IN_LAB))
        .order_by(Specimen.urgency, Specimen.received_at, Specimen.id)
        .limit(limit)
    )
    return [(specimen, order) for specimen, order in session.execute(query).tuples()]


def count_in_lab_unfinished(session: Session) -> int:
    query = select(func.count()).select_from(Specimen).where(Specimen.status.in_(SPECIMEN_IN_LAB))
    return int(session.scalar(query) or 0)


def worklist(
    session: Session, *, container: str | None = None, limit: int = 500
) -> list[tuple[Specimen, Order, list[OrderedTest]]]:
    """Pending tests on specimens in the lab, one entry per specimen: stat first, then oldest.

    A bench is a container for now (EDTA: haematology, SERUM: chemistry); `None` is every bench.
    `limit` counts tubes.
    """
    tubes = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_IN_LAB))
        .order_by(Specimen.urgency, Specimen.received_at, Specimen.id)
        .limit(limit)
    )
    if container:
        tubes = tubes.where(Specimen.container == container)
    found = session.execute(tubes).tuples().all()
    pending: dict[int, list[OrderedTest]] = {}
    for ordered in session.scalars(
        select(OrderedTest)
        .where(
            OrderedTest.specimen_id.in_([specimen.id for specimen, _ in found]),
            OrderedTest.status.in_(TEST_PENDING),
        )
        .order_by(OrderedTest.id)
    ):
        pending.setdefault(ordered.specimen_id or 0, []).append(ordered)
    return [
        (specimen, order, pending[specimen.id])
        for specimen, order in found
        if specimen.id in pending
    ]


def benches(session: Session) -> list[str]:
    """The containers of the catalog's active tests: the worklist's bench choice."""
    return sorted({rule.container for rule in snapshot(session).by_code.values() if rule.active})


def overdue_tests(
    session: Session, *, now: datetime, limit: int = 50
) -> list[tuple[OrderedTest, Specimen, datetime]]:
    """Tests not yet verified whose result was due before `now`, the latest first served.

    Only tests with a turnaround target in the catalog have a due time; no patient data.
    """
    query = (
        select(OrderedTest, Specimen)
        .join(Specimen, Specimen.id == OrderedTest.specimen_id)
        .where(
            OrderedTest.status.in_(TEST_OPEN),
            OrderedTest.due_at.is_not(None),
            OrderedTest.due_at < now,
            Specimen.status.not_in(SPECIMEN_FINISHED),
        )
        .order_by(OrderedTest.due_at, OrderedTest.id)
        .limit(limit)
    )
    return [
        (ordered, specimen, ordered.due_at)
        for ordered, specimen in session.execute(query).tuples()
        if ordered.due_at is not None
    ]
