"""The work lists: what waits to be received, what is in the lab, what each bench must run.

Read-only and without patient data (tubes and tests only). Each list is a range scan of a
partial index made by migration 0006 (`specimen.urgency`, `ordered_test.due_at`), so it costs
the same with a hundred open tubes or a hundred thousand. A list asks a fixed number of
questions however long it is: the orders come without their tests (`lazyload`: the lists show
only the order's priority), and the tests of the listed tubes come in one query
(`tests_of_many`), each with its catalog test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session, lazyload, selectinload

from lab.catalog.rules import snapshot
from lab.tables import (
    SPECIMEN_FINISHED,
    SPECIMEN_IN_LAB,
    SPECIMEN_NOT_YET_IN_LAB,
    TEST_OPEN,
    TEST_PENDING,
    LabTest,
    Order,
    OrderedTest,
    OrderStatus,
    Specimen,
    SpecimenStatus,
)

PRIORITY_OF_URGENCY = {0: "stat", 1: "urgent", 2: "routine"}
# A list's tests name their catalog test: the few distinct ones in one more query, without
# their reference intervals (read only if someone looks at them).
_WITH_TEST = selectinload(OrderedTest.test).lazyload(LabTest.reference_intervals)


def awaiting_receipt(session: Session, *, limit: int = 50) -> list[tuple[Specimen, Order]]:
    """Specimens expected or collected but not received: stat, then urgent, then oldest first."""
    query = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_NOT_YET_IN_LAB), Order.status == OrderStatus.ACTIVE)
        .order_by(Specimen.urgency, Specimen.created_at, Specimen.id)
        .limit(limit)
        .options(lazyload(Order.tests))
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
        .options(lazyload(Order.tests))
    )
    return [(specimen, order) for specimen, order in session.execute(query).tuples()]


def count_in_lab_unfinished(session: Session, *, container: str | None = None) -> int:
    """Tubes in the lab, of one bench or of all: a true count, index-only over the partial
    index of tubes in the lab (its size is the open work, not the history)."""
    query = select(func.count()).select_from(Specimen).where(Specimen.status.in_(SPECIMEN_IN_LAB))
    if container:
        query = query.where(Specimen.container == container)
    return int(session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class WorklistCursor:
    """Where a page of a worklist ended: its last tube's sort key (urgency, received, id). The
    next page starts after it (keyset paging along `ix_specimen_in_lab`)."""

    urgency: int
    received_at: datetime
    specimen_id: int

    def text(self) -> str:
        return f"{self.urgency}~{self.received_at.isoformat()}~{self.specimen_id}"

    @classmethod
    def parse(cls, text: str) -> WorklistCursor | None:
        try:
            urgency, received_at, specimen_id = text.split("~")
            return cls(int(urgency), datetime.fromisoformat(received_at), int(specimen_id))
        except ValueError:
            return None

    @classmethod
    def of(cls, specimen: Specimen) -> WorklistCursor | None:
        if specimen.received_at is None:
            return None
        return cls(specimen.urgency, specimen.received_at, specimen.id)


@dataclass(frozen=True, slots=True)
class WorklistPage:
    entries: list[tuple[Specimen, Order, list[OrderedTest]]]
    next_cursor: WorklistCursor | None  # None: this is the last page


def worklist(
    session: Session, *, container: str | None = None, limit: int = 500
) -> list[tuple[Specimen, Order, list[OrderedTest]]]:
    """The first page of a worklist (`worklist_page`), its entries only."""
    return worklist_page(session, container=container, limit=limit).entries


def worklist_page(
    session: Session,
    *,
    container: str | None = None,
    limit: int = 500,
    after: WorklistCursor | None = None,
) -> WorklistPage:
    """Pending tests on specimens in the lab, one entry per specimen: stat first, then oldest.

    A bench is a container for now (EDTA: haematology, SERUM: chemistry); `None` is every bench.
    A page reads `limit` tubes after `after` (a tube in the lab with nothing pending is left
    out, so a page may list fewer) and says where the next page starts.
    """
    tubes = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_IN_LAB))
        .order_by(Specimen.urgency, Specimen.received_at, Specimen.id)
        .limit(limit + 1)
        .options(lazyload(Order.tests))
    )
    if container:
        tubes = tubes.where(Specimen.container == container)
    if after is not None:
        tubes = tubes.where(
            tuple_(Specimen.urgency, Specimen.received_at, Specimen.id)
            > tuple_(literal(after.urgency), literal(after.received_at), literal(after.specimen_id))
        )
    found = session.execute(tubes).tuples().all()
    # One tube more than the page was read: whether a next page exists.
    more = len(found) > limit
    found = found[:limit]
    pending: dict[int, list[OrderedTest]] = {}
    for ordered in session.scalars(
        select(OrderedTest)
        .where(
            OrderedTest.specimen_id.in_([specimen.id for specimen, _ in found]),
            OrderedTest.status.in_(TEST_PENDING),
        )
        .order_by(OrderedTest.id)
        .options(_WITH_TEST)
    ):
        pending.setdefault(ordered.specimen_id or 0, []).append(ordered)
    return WorklistPage(
        entries=[
            (specimen, order, pending[specimen.id])
            for specimen, order in found
            if specimen.id in pending
        ],
        next_cursor=WorklistCursor.of(found[-1][0]) if more and found else None,
    )


class WorklistLine(NamedTuple):
    """A tube of the worklist page, as plain values (no ORM objects: a page has 200)."""

    specimen_id: int
    accession_number: str
    container: str
    received_at: datetime | None
    urgency: int
    priority: str
    test_codes: list[str]  # the tests still to run, in the order they were ordered


@dataclass(frozen=True, slots=True)
class WorklistLines:
    lines: list[WorklistLine]
    next_cursor: WorklistCursor | None  # None: this is the last page


def worklist_lines(
    session: Session,
    *,
    container: str | None = None,
    limit: int = 200,
    after: WorklistCursor | None = None,
) -> WorklistLines:
    """`worklist_page` for the worklist page: one statement, rows of plain values. The pending
    tests' codes come with each tube (a correlated subquery on `ix_ordered_test_specimen_status`),
    and a tube with nothing pending is left out, as there."""
    codes = (
        select(func.array_agg(aggregate_order_by(LabTest.code, OrderedTest.id)))
        .select_from(OrderedTest)
        .join(LabTest, LabTest.id == OrderedTest.test_id)
        .where(OrderedTest.specimen_id == Specimen.id, OrderedTest.status.in_(TEST_PENDING))
        .correlate(Specimen)
        .scalar_subquery()
    )
    query = (
        select(
            Specimen.id,
            Specimen.accession_number,
            Specimen.container,
            Specimen.received_at,
            Specimen.urgency,
            Order.priority,
            codes,
        )
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.status.in_(SPECIMEN_IN_LAB))
        .order_by(Specimen.urgency, Specimen.received_at, Specimen.id)
        .limit(limit + 1)
    )
    if container:
        query = query.where(Specimen.container == container)
    if after is not None:
        query = query.where(
            tuple_(Specimen.urgency, Specimen.received_at, Specimen.id)
            > tuple_(literal(after.urgency), literal(after.received_at), literal(after.specimen_id))
        )
    rows = [WorklistLine(*row) for row in session.connection().execute(query)]
    # One tube more than the page was read: whether a next page exists.
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return WorklistLines(
        lines=[row for row in rows if row.test_codes],
        next_cursor=(
            WorklistCursor(last.urgency, last.received_at, last.specimen_id)
            if last is not None and last.received_at is not None
            else None
        ),
    )


def benches(session: Session) -> list[str]:
    """The containers of the catalog's active tests: the worklist's bench choice."""
    return sorted({rule.container for rule in snapshot(session).by_code.values() if rule.active})


def overdue_tests(
    session: Session, *, now: datetime, limit: int = 50
) -> list[tuple[OrderedTest, Specimen, datetime]]:
    """Tests not yet verified whose result was due before `now`, the latest first served, and
    tests that wait for a new specimen because theirs was rejected: a test not done never
    drops off the list.

    A test is due its turnaround target after receipt of its tube; a tube not received yet
    (never collected, lost on the way) counts from the time the test was ordered
    (`specimens.service.set_due_times`), and so does a test waiting for a new specimen, which
    is listed at once, whenever it falls due (a test without a target: since it was ordered).
    Only tests with a turnaround target in the catalog have a due time; no patient data. The
    two kinds are read apart, each from its own index (`ix_ordered_test_due`; the rejected
    tubes by `ix_specimen_status_created`): one query with OR over both tables reads every
    ordered test (1.5 s with a million results), and the overview asks on every load.
    """
    late = session.execute(
        select(OrderedTest, Specimen, OrderedTest.due_at)
        .join(Specimen, Specimen.id == OrderedTest.specimen_id)
        .where(_late(now))
        .order_by(OrderedTest.due_at, OrderedTest.id)
        .limit(limit)
        .options(_WITH_TEST)
    ).tuples()
    waiting = session.execute(
        select(OrderedTest, Specimen, OrderedTest.requested_at)
        .join(Specimen, Specimen.id == OrderedTest.specimen_id)
        .where(_waiting_for_a_new_specimen())
        .order_by(OrderedTest.requested_at, OrderedTest.id)
        .limit(limit)
        .options(_WITH_TEST)
    ).tuples()
    found = [(ordered, specimen, when) for ordered, specimen, when in late if when is not None]
    found += [
        (ordered, specimen, _due_from_order(ordered, when)) for ordered, specimen, when in waiting
    ]
    found.sort(key=lambda row: (row[2], row[0].id))
    return found[:limit]


def _due_from_order(ordered: OrderedTest, requested_at: datetime) -> datetime:
    return requested_at + timedelta(minutes=ordered.test.turnaround_minutes or 0)


def _late(now: datetime) -> ColumnElement[bool]:
    return and_(
        OrderedTest.status.in_(TEST_OPEN),
        OrderedTest.due_at.is_not(None),
        OrderedTest.due_at < now,
        Specimen.status.not_in(SPECIMEN_FINISHED),
    )


def _waiting_for_a_new_specimen() -> ColumnElement[bool]:
    return and_(OrderedTest.status.in_(TEST_PENDING), Specimen.status == SpecimenStatus.REJECTED)


def tests_of_many(session: Session, tubes: Iterable[Specimen]) -> dict[int, list[OrderedTest]]:
    """`specimens.service.tests_of` for many tubes in one query: {tube id: its tests}.

    An aliquot's tests are its primary tube's (results are stored against the primary's tests).
    """
    primary_of: dict[int, int] = {}
    for tube in tubes:
        primary = tube
        while primary.parent_id is not None:
            parent = session.get(Specimen, primary.parent_id)
            if parent is None:
                break
            primary = parent
        primary_of[tube.id] = primary.id
    found: dict[int, list[OrderedTest]] = {}
    for ordered in session.scalars(
        select(OrderedTest)
        .where(OrderedTest.specimen_id.in_(set(primary_of.values())))
        .order_by(OrderedTest.id)
        .options(_WITH_TEST)
    ):
        found.setdefault(ordered.specimen_id or 0, []).append(ordered)
    return {tube_id: found.get(primary_id, []) for tube_id, primary_id in primary_of.items()}


def lab_tests(session: Session, test_ids: Iterable[int]) -> dict[int, LabTest]:
    """The catalog's tests of these ids in one query (their reference intervals are read only if
    someone looks at them). While the caller holds the answer, `session.get(LabTest, id)` is
    answered from the session without asking the database."""
    wanted = set(test_ids)
    if not wanted:
        return {}
    return {
        test.id: test
        for test in session.scalars(
            select(LabTest)
            .where(LabTest.id.in_(wanted))
            .options(lazyload(LabTest.reference_intervals))
        )
    }


def tubes_with_orders(
    session: Session, accession_numbers: list[str]
) -> dict[str, tuple[Specimen, Order]]:
    """The tubes named and their orders, by accession number, in one query."""
    if not accession_numbers:
        return {}
    query = (
        select(Specimen, Order)
        .join(Order, Order.id == Specimen.order_id)
        .where(Specimen.accession_number.in_(set(accession_numbers)))
    )
    return {
        specimen.accession_number: (specimen, order)
        for specimen, order in session.execute(query).tuples()
    }


def open_work_counts(now: datetime) -> dict[str, ScalarSelect[int]]:
    """The overview's counts of open work as scalar subqueries, to be asked in one statement
    with others (one round trip, not one per count): tubes awaiting receipt per priority, tubes
    in the lab, overdue tests. Each is a true count over a partial index of open work."""
    counts: dict[str, ScalarSelect[int]] = {}
    for urgency, priority in PRIORITY_OF_URGENCY.items():
        counts[f"awaiting_{priority}"] = (
            select(func.count())
            .select_from(Specimen)
            .where(Specimen.status.in_(SPECIMEN_NOT_YET_IN_LAB), Specimen.urgency == urgency)
            .scalar_subquery()
        )
    counts["in_lab"] = (
        select(func.count())
        .select_from(Specimen)
        .where(Specimen.status.in_(SPECIMEN_IN_LAB))
        .scalar_subquery()
    )
    for name, condition in (("late", _late(now)), ("waiting", _waiting_for_a_new_specimen())):
        counts[f"overdue_{name}"] = (
            select(func.count())
            .select_from(OrderedTest)
            .join(Specimen, Specimen.id == OrderedTest.specimen_id)
            .where(condition)
            .scalar_subquery()
        )
    return counts


def count_overdue(session: Session, *, now: datetime) -> int:
    """How many tests are overdue in all (the overview lists only the first of them); the two
    kinds counted apart, each from its own index (see `overdue_tests`), in one statement."""
    counts = open_work_counts(now)
    late, waiting = session.execute(select(counts["overdue_late"], counts["overdue_waiting"])).one()
    return int(late or 0) + int(waiting or 0)
