"""Every test not done is on the overdue list when due: from receipt of its tube, or, for a
tube never received and a test waiting for a new specimen, from the time it was ordered."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from lab.specimens import queries as work_lists
from lab.specimens import service as specimens
from lab.tables import OrderedTest
from lab.timeutil import as_utc
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
TARGET = timedelta(minutes=120)  # the demo catalog's turnaround target of NA and CRP


def _tests(db: Session, order_id: int) -> dict[str, OrderedTest]:
    order_tubes = specimens.tubes_of_order(db, order_id)
    return {t.test.code: t for tube in order_tubes for t in specimens.tests_of(db, tube)}


def _listed(db: Session, order_id: int, now: object) -> dict[str, object]:
    overdue = work_lists.overdue_tests(db, now=now, limit=100_000)  # type: ignore[arg-type]
    return {ordered.test.code: due for ordered, tube, due in overdue if tube.order_id == order_id}


def test_a_tube_never_received_is_due_from_the_order_time(db: Session) -> None:
    order = place(db, BIO, placer="DUE-1", tests=["NA", "CRP"])
    db.flush()
    tests = _tests(db, order.id)
    ordered_at = as_utc(tests["NA"].requested_at)
    assert as_utc(tests["NA"].due_at) == ordered_at + TARGET  # type: ignore[arg-type]
    assert _listed(db, order.id, ordered_at + TARGET - timedelta(minutes=1)) == {}
    late = _listed(db, order.id, ordered_at + TARGET + timedelta(minutes=1))
    assert late == {"NA": ordered_at + TARGET, "CRP": ordered_at + TARGET}
    assert work_lists.count_overdue(db, now=ordered_at + TARGET + timedelta(minutes=1)) >= 2


def test_receipt_counts_the_target_again_from_receipt(db: Session) -> None:
    order = place(db, BIO, placer="DUE-2", tests=["NA"])
    (tube,) = specimens.tubes_of_order(db, order.id)
    received = specimens.receive(db, actor=BIO, number=tube.accession_number)
    db.flush()
    na = _tests(db, order.id)["NA"]
    assert received.received_at is not None
    assert as_utc(na.due_at) == as_utc(received.received_at) + TARGET  # type: ignore[arg-type]
    # A test added to the received tube later keeps its own time.
    before = na.due_at
    specimens.set_due_times(db, tube)
    assert na.due_at == before


def test_a_test_waiting_for_a_new_specimen_is_listed_with_its_due_time(db: Session) -> None:
    order = place(db, BIO, placer="DUE-3", tests=["NA"])
    (tube,) = specimens.tubes_of_order(db, order.id)
    specimens.receive(db, actor=BIO, number=tube.accession_number)
    specimens.reject(db, actor=BIO, number=tube.accession_number, reason="RH")
    db.flush()
    na = _tests(db, order.id)["NA"]
    ordered_at = as_utc(na.requested_at)
    # Listed at once (a new specimen is needed), due its target from the order time.
    assert _listed(db, order.id, ordered_at) == {"NA": ordered_at + TARGET}
