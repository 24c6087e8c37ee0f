"""Results as they are read: per tube, the review queue, a patient's history (no changes here).

Reads of patient data are audited here, as everywhere; the changes live in `service.py`.
"""

from __future__ import annotations

from sqlalchemy import any_, func, or_, select
from sqlalchemy.orm import Session, lazyload

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.errors import NotFound
from lab.orders.models import Order, OrderedTest
from lab.patients.service import audit_read
from lab.results.models import Result, ResultVersion
from lab.results.statuses import RELEASED, R
from lab.specimens import service as specimens
from lab.specimens.models import Specimen


def read(session: Session, result_id: int, *, actor: Actor) -> Result:
    result = session.get(Result, result_id)
    if result is None:
        raise NotFound(f"no result {result_id}")
    audit_read(
        session, actor=actor, patient_id=result.patient_id, what="result", entity_id=result.id
    )
    return result


def for_specimen(session: Session, accession_number: str, *, actor: Actor) -> list[Result]:
    """Results of the specimen's tests, whichever tube (primary or aliquot) they were run on."""
    specimen = specimens.get_by_accession(session, accession_number)
    found = results_of_tube(session, specimen)
    audit_read(
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


def review_queue(session: Session, *, limit: int = 100) -> list[Result]:
    """Results awaiting review, oldest first, stat orders before others (no patient data)."""
    query = (
        select(Result)
        .join(OrderedTest, OrderedTest.id == Result.ordered_test_id)
        .join(Order, Order.id == OrderedTest.order_id)
        .where(Result.status == R.AWAITING_REVIEW)
        .order_by((Order.priority == "stat").desc(), Result.recorded_at, Result.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def cumulative(
    session: Session, *, actor: Actor, patient_id: int, test_code: str, limit: int = 10_000
) -> list[Result]:
    """One patient's released results of one test over time, newest first."""
    test = catalog.get_by_code(session, test_code)
    found = list(
        session.scalars(
            select(Result)
            .where(
                Result.patient_id == patient_id,
                Result.test_id == test.id,
                Result.status.in_(tuple(RELEASED)),
            )
            .order_by(Result.observed_at.desc().nulls_last(), Result.id.desc())
            .limit(limit)
            # The current value is on the result row; the history is read only if asked for.
            .options(lazyload(Result.versions))
        )
    )
    audit_read(
        session, actor=actor, patient_id=patient_id, what="result.cumulative", entity_id=test.code
    )
    return found


CRITICAL_FLAGS = ("LL", "HH")
# `'LL' = ANY(flags) OR 'HH' = ANY(flags)`: a critical result, in SQL.
_is_critical = or_(*(any_(Result.flags) == flag for flag in CRITICAL_FLAGS))


def awaiting_review_counts(session: Session) -> tuple[int, int]:
    """How many results await review, and how many of them are critical (LL/HH)."""
    waiting = Result.status == R.AWAITING_REVIEW
    total = session.scalar(select(func.count()).select_from(Result).where(waiting))
    critical = session.scalar(select(func.count()).select_from(Result).where(waiting, _is_critical))
    return int(total or 0), int(critical or 0)


def critical_awaiting_review(session: Session, *, limit: int = 50) -> list[Result]:
    """Critical results (LL/HH) awaiting review, oldest first (no patient data)."""
    query = (
        select(Result)
        .where(Result.status == R.AWAITING_REVIEW, _is_critical)
        .order_by(Result.recorded_at, Result.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def read_review_queue(session: Session, *, actor: Actor, limit: int = 100) -> list[Result]:
    """The review queue as a reviewer sees it, with the patients: one audited read per specimen."""
    queue = review_queue(session, limit=limit)
    seen: set[int] = set()
    for result in queue:
        if result.specimen_id in seen:
            continue
        seen.add(result.specimen_id)
        specimen = session.get(Specimen, result.specimen_id)
        audit_read(
            session,
            actor=actor,
            patient_id=result.patient_id,
            what="result.review",
            entity_id=specimen.accession_number if specimen else result.specimen_id,
        )
    return queue


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


def is_unremarkable(result: Result) -> bool:
    """No flag of ours, and no analyser flag other than N (normal, LIS2-A2 R-7)."""
    analyser_flags = result.versions[-1].instrument_flags.replace(",", " ").split()
    return not result.flags and all(flag.upper() == "N" for flag in analyser_flags)


def value_text(result: Result | ResultVersion) -> str:
    if result.value_numeric is not None:
        return f"{result.comparator or ''}{result.value_numeric}"
    return result.value_text or ""


# --- rules shared by the entry points above -------------------------------------------------
