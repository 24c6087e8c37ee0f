"""Results as they are read: per tube, the review queue, a patient's history (no changes here).

Reads of patient data are audited here, as everywhere; the changes live in `service.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ScalarSelect, any_, func, literal, or_, select, true, tuple_
from sqlalchemy.orm import Session, aliased, lazyload, selectinload

from lab import audit
from lab.audit import Actor
from lab.errors import NotFound
from lab.specimens import queries as work_lists
from lab.specimens import service as specimens
from lab.tables import (
    LabTest,
    Order,
    Patient,
    Result,
    ResultVersion,
    Specimen,
    StoredMeasurement,
)
from lab.tables.results import RELEASED, R


class HasResultId(Protocol):
    @property
    def result_id(self) -> int | None: ...


def read(session: Session, result_id: int, *, actor: Actor) -> Result:
    result = session.get(Result, result_id)
    if result is None:
        raise NotFound(f"no result {result_id}", code="result_unknown", params={"id": result_id})
    audit.record_read(
        session, actor=actor, patient_id=result.patient_id, what="result", entity_id=result.id
    )
    return result


def stored(session: Session, outcome: HasResultId) -> Result:
    """The result a recorded measurement was stored as (not a read of patient data by anyone:
    the caller has just written it)."""
    if outcome.result_id is None:
        raise NotFound("the measurement was not stored")
    result = session.get(Result, outcome.result_id)
    if result is None:
        raise NotFound(f"no result {outcome.result_id}")
    return result


def for_specimen(session: Session, accession_number: str, *, actor: Actor) -> list[Result]:
    """Results of the specimen's tests, whichever tube (primary or aliquot) they were run on."""
    specimen = specimens.get_by_accession(session, accession_number)
    found = results_of_tube(session, specimen)
    audit.record_read(
        session,
        actor=actor,
        patient_id=specimen.patient_id,
        what="result.list",
        entity_id=specimen.accession_number,
    )
    return found


def results_of_tube(session: Session, specimen: Specimen) -> list[Result]:
    ordered_ids = [t.id for t in specimens.tests_of(session, specimen)]
    return list(
        session.scalars(
            select(Result).where(Result.ordered_test_id.in_(ordered_ids)).order_by(Result.id)
        )
    )


def others_wait_for_inputs(session: Session, result: Result) -> bool:
    """Whether another result of the patient awaits review held only by `waits_for` (a
    calculated result waiting for its inputs): one indexed EXISTS, so verifying an ordinary
    result does not read its whole tube. A superset of the tube's own waiting results."""
    waiting = select(Result.id).where(
        Result.patient_id == result.patient_id,
        Result.status == R.AWAITING_REVIEW,
        Result.id != result.id,
        Result.holds.contains([{"key": "waits_for"}]),
    )
    return bool(session.scalar(select(waiting.exists())))


@dataclass(frozen=True, slots=True)
class ReviewCursor:
    """Where a page of the review queue ended: the queue's sort key of its last result.

    Keyset paging: the next page starts after this key, so it costs one index range scan
    however deep the queue is, and a result verified meanwhile does not shift the pages.
    """

    urgency: int
    recorded_at: datetime
    result_id: int

    def text(self) -> str:
        return f"{self.urgency}~{self.recorded_at.isoformat()}~{self.result_id}"

    @classmethod
    def parse(cls, text: str) -> ReviewCursor | None:
        try:
            urgency, recorded_at, result_id = text.split("~")
            return cls(int(urgency), datetime.fromisoformat(recorded_at), int(result_id))
        except ValueError:
            return None

    @classmethod
    def of(cls, result: Result) -> ReviewCursor:
        return cls(result.urgency, result.recorded_at, result.id)


def review_queue(
    session: Session, *, limit: int = 100, after: ReviewCursor | None = None
) -> list[Result]:
    """Results awaiting review: stat, then urgent, then oldest first (no patient data)."""
    query = (
        select(Result)
        .where(Result.status == R.AWAITING_REVIEW)
        .order_by(Result.urgency, Result.recorded_at, Result.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            tuple_(Result.urgency, Result.recorded_at, Result.id)
            > tuple_(literal(after.urgency), literal(after.recorded_at), literal(after.result_id))
        )
    return list(session.scalars(query))


class CumulativePoint(NamedTuple):
    """One released result in a patient's history of a test: what a cumulative report shows.

    A named tuple, not a frozen dataclass: a history holds up to ten thousand of them, and a
    tuple is made in one step where a frozen dataclass sets its fields one call at a time."""

    result_id: int
    accession_number: str
    taken_at: datetime  # collected, else received, else measured, else recorded
    value_numeric: Decimal | None
    value_text: str | None
    comparator: str | None
    flags: list[str]
    unit: str | None
    reference_low: Decimal | None
    reference_high: Decimal | None
    measured_at: datetime  # observed, else recorded: the history's order and its pages' cursor

    @property
    def cursor(self) -> HistoryCursor:
        return HistoryCursor(self.measured_at, self.result_id)


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Where a page of a patient's history of a test ended: its last result's measured time
    (observed, else recorded) and id. The next page starts after it: keyset paging along
    `ix_result_patient_history`, one range scan per page however long the history."""

    measured_at: datetime
    result_id: int

    def text(self) -> str:
        return f"{self.measured_at.isoformat()}~{self.result_id}"

    @classmethod
    def parse(cls, text: str) -> HistoryCursor | None:
        try:
            measured_at, result_id = text.split("~")
            return cls(datetime.fromisoformat(measured_at), int(result_id))
        except ValueError:
            return None


# The order of `ix_result_patient_history` (migration 0022): newest measured first.
_MEASURED = func.coalesce(Result.observed_at, Result.recorded_at)


def cumulative(
    session: Session,
    *,
    actor: Actor,
    patient_id: int,
    test_code: str,
    limit: int = 10_000,
    before: HistoryCursor | None = None,
) -> list[CumulativePoint]:
    """One patient's released results of one test over time, newest measured first, in one
    query: the first `limit` of them, or those after `before` (the next page)."""
    code = test_code.strip().upper()
    # The test's id only: the catalog's test with its reference intervals is not needed here.
    test_id = session.scalar(select(LabTest.id).where(LabTest.code == code))
    if test_id is None:
        raise NotFound(
            f"unknown test code {test_code!r}", code="test_unknown", params={"code": test_code}
        )
    taken = func.coalesce(
        Specimen.collected_at, Specimen.received_at, Result.observed_at, Result.recorded_at
    )
    query = (
        select(
            Result.id,
            Specimen.accession_number,
            taken,
            Result.value_numeric,
            Result.value_text,
            Result.comparator,
            # As text: converting ten thousand arrays one item at a time costs more than the query.
            func.array_to_string(Result.flags, ","),
            Result.unit,
            ResultVersion.reference_low,
            ResultVersion.reference_high,
            _MEASURED,
        )
        .join(Specimen, Specimen.id == Result.specimen_id)
        .join(
            ResultVersion,
            (ResultVersion.result_id == Result.id) & (ResultVersion.version == Result.version),
        )
        .where(
            Result.patient_id == patient_id,
            Result.test_id == test_id,
            Result.status.in_(tuple(RELEASED)),
        )
        .order_by(_MEASURED.desc(), Result.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(
            tuple_(_MEASURED, Result.id)
            < tuple_(literal(before.measured_at), literal(before.result_id))
        )
    # Core, not ORM, execution: the rows are plain values, and ten thousand of them go through
    # the ORM's row handling at several times the cost of the query itself.
    rows = session.connection().execute(query)
    points = [
        CumulativePoint(
            ident,
            number,
            taken_at,
            value,
            text,
            comp,
            flags.split(",") if flags else [],
            unit,
            low,
            high,
            measured,
        )
        for ident, number, taken_at, value, text, comp, flags, unit, low, high, measured in rows
    ]
    audit.record_read(
        session, actor=actor, patient_id=patient_id, what="result.cumulative", entity_id=code
    )
    return points


CRITICAL_FLAGS = ("LL", "HH")
# `'LL' = ANY(flags) OR 'HH' = ANY(flags)`: a critical result, in SQL.
_is_critical = or_(*(any_(Result.flags) == flag for flag in CRITICAL_FLAGS))


def review_count_queries() -> tuple[ScalarSelect[int], ScalarSelect[int]]:
    """How many results await review, and how many of them are critical (LL/HH), as scalar
    subqueries: true counts, each an index-only count of a partial index
    (`ix_result_review_queue`, `ix_result_critical_review`) whose size is the queue's, not the
    million results stored."""
    waiting = Result.status == R.AWAITING_REVIEW
    total = select(func.count()).select_from(Result).where(waiting).scalar_subquery()
    critical = (
        select(func.count()).select_from(Result).where(waiting, _is_critical).scalar_subquery()
    )
    return total, critical


def awaiting_review_counts(session: Session) -> tuple[int, int]:
    """How many results await review, and how many of them are critical: one statement."""
    found = session.execute(select(*review_count_queries())).one()
    return int(found[0] or 0), int(found[1] or 0)


def critical_awaiting_review(session: Session, *, limit: int = 50) -> list[Result]:
    """Critical results (LL/HH) awaiting review, oldest first (no patient data)."""
    query = (
        select(Result)
        .where(Result.status == R.AWAITING_REVIEW, _is_critical)
        .order_by(Result.recorded_at, Result.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True, slots=True)
class ReviewQueue:
    results: list[Result]
    tubes: dict[int, Specimen]
    patients: dict[int, Patient]
    orders: dict[int, Order]
    tests: dict[int, LabTest]


def read_review_queue(
    session: Session,
    *,
    actor: Actor,
    limit: int = 100,
    after: ReviewCursor | None = None,
    specimen_id: int | None = None,
) -> ReviewQueue:
    """The review queue as a reviewer sees it, with the patients: one audited read per specimen.

    The tubes, patients, orders and tests behind the queue are read in four queries, so the page
    asks the same number of questions whether it shows one tube or two hundred.
    """
    if specimen_id is not None:
        queue = waiting_on_tube(session, specimen_id)
    else:
        queue = review_queue(session, limit=limit, after=after)
    if not queue:  # nothing waits (a partial update after the tube's last result): no questions
        return ReviewQueue(results=[], tubes={}, patients={}, orders={}, tests={})
    specimen_ids = {result.specimen_id for result in queue}
    tubes = {
        specimen.id: specimen
        for specimen in session.scalars(select(Specimen).where(Specimen.id.in_(specimen_ids)))
    }
    patients = {
        patient.id: patient
        for patient in session.scalars(
            select(Patient)
            .where(Patient.id.in_({result.patient_id for result in queue}))
            .options(selectinload(Patient.identifiers))
        )
    }
    orders = {
        order.id: order
        for order in session.scalars(
            select(Order)
            .where(Order.id.in_({tube.order_id for tube in tubes.values()}))
            .options(lazyload(Order.tests))
        )
    }
    # The queue's tests in one query, held by the answer: each line's `session.get(LabTest, ...)`
    # is then answered from the session instead of asking the database once per test.
    tests = work_lists.lab_tests(session, {result.test_id for result in queue})
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for result in queue:
        if result.specimen_id in seen:
            continue
        seen.add(result.specimen_id)
        tube = tubes.get(result.specimen_id)
        rows.append(
            audit.row(
                actor=actor,
                action="read.result.review",
                entity_type="result",
                entity_id=tube.accession_number if tube else result.specimen_id,
                patient_id=result.patient_id,
            )
        )
    audit.record_rows(session, rows)
    return ReviewQueue(results=queue, tubes=tubes, patients=patients, orders=orders, tests=tests)


def waiting_on_tube(session: Session, specimen_id: int) -> list[Result]:
    """The results of one tube awaiting review (a partial update of that tube's block)."""
    query = (
        select(Result)
        .where(Result.status == R.AWAITING_REVIEW, Result.specimen_id == specimen_id)
        .order_by(Result.urgency, Result.recorded_at, Result.id)
    )
    return list(session.scalars(query))


# Made once: a fresh alias on every call costs SQLAlchemy tens of milliseconds of CPU building
# the alias's column index, more than the query takes in PostgreSQL.
_CURRENT, _EARLIER = aliased(Result, name="current_result"), aliased(Result, name="earlier")


def previous_released_many(session: Session, results: list[Result]) -> dict[int, Result | None]:
    """`previous_released` for many results in two queries (the review page)."""
    if not results:
        return {}
    current, earlier = _CURRENT, _EARLIER
    measured = func.coalesce(earlier.observed_at, earlier.recorded_at)
    latest = (
        select(earlier.id)
        .where(
            earlier.patient_id == current.patient_id,
            earlier.test_id == current.test_id,
            earlier.id != current.id,
            earlier.status.in_(tuple(RELEASED)),
            measured <= func.coalesce(current.observed_at, current.recorded_at),
        )
        .order_by(measured.desc(), earlier.id.desc())
        .limit(1)
        .correlate(current)
        .lateral()
    )
    pairs = session.execute(
        select(current.id, latest.c.id)
        .select_from(current)
        .join(latest, true())
        .where(current.id.in_([result.id for result in results]))
    ).all()
    wanted = [previous for _, previous in pairs if previous is not None]
    # The page shows the previous value and when it was measured: not its versions and
    # measurements (read only if someone looks at them).
    found = (
        {
            result.id: result
            for result in session.scalars(
                select(Result)
                .where(Result.id.in_(wanted))
                .options(lazyload(Result.versions), lazyload(Result.measurements))
            )
        }
        if wanted
        else {}
    )
    previous_of = {result_id: found.get(previous) for result_id, previous in pairs}
    return {result.id: previous_of.get(result.id) for result in results}


def results_of_order(session: Session, order: Order) -> list[Result]:
    """Every result of the order's tests. The caller has audited its read of the order."""
    ids = [t.id for t in order.tests]
    if not ids:
        return []
    query = select(Result).where(Result.ordered_test_id.in_(ids)).order_by(Result.id)
    return list(session.scalars(query))


def previous_released(session: Session, result: Result) -> Result | None:
    """The patient's last released result of the same test before this one (for the delta)."""
    # Measured time orders results; a manual entry without one counts from when it was recorded.
    measured = func.coalesce(Result.observed_at, Result.recorded_at)
    this_measured = result.observed_at or result.recorded_at
    return session.scalar(
        select(Result)
        .where(
            Result.patient_id == result.patient_id,
            Result.test_id == result.test_id,
            Result.id != result.id,
            Result.status.in_(tuple(RELEASED)),
            measured <= this_measured,
        )
        .order_by(measured.desc(), Result.id.desc())
        .limit(1)
    )


def further_measurements(
    session: Session, *, limit: int = 100
) -> list[tuple[Result, StoredMeasurement]]:
    """Measurements that arrived after their result was released and wait for a look, oldest
    first (no patient data: the page that shows them audits its read)."""
    rows = session.execute(
        select(Result, StoredMeasurement)
        .join(StoredMeasurement, StoredMeasurement.result_id == Result.id)
        .where(StoredMeasurement.after_release, StoredMeasurement.reviewed_at.is_(None))
        .order_by(StoredMeasurement.recorded_at, StoredMeasurement.id)
        .limit(limit)
    ).all()
    return [(result, measurement) for result, measurement in rows]


def is_unremarkable(result: Result) -> bool:
    """No hold at all (a result no reference interval applies to is held), no flag of ours, and
    no analyser flag other than N (normal, LIS2-A2 R-7)."""
    analyser_flags = result.versions[-1].instrument_flags.replace(",", " ").split()
    return (
        not result.holds
        and not result.flags
        and all(flag.upper() == "N" for flag in analyser_flags)
    )


def value_text(result: Result | ResultVersion | StoredMeasurement) -> str:
    if result.value_numeric is not None:
        return f"{result.comparator or ''}{result.value_numeric}"
    return result.value_text or ""


# --- rules shared by the entry points above -------------------------------------------------
