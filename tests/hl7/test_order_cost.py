"""What one order costs the listener's store-process-ACK path, and that the set-based writes
leave the same rows as before: the patient, its identifier, the order, one tube per container
kind with its event, the tests each on its tube with a due time, and the audit rows in the order
of the changes.

The statement count is a ceiling, not an exact figure: a cache that saves a read (the catalog
version) only lowers it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7 import inbox as inbox_module
from lab.hl7.codec.errors import ErrorCode, Problem
from lab.hl7.handlers import MessageRefused
from lab.hl7.inbox import Inbox, Stored
from lab.patients.service import find_by_identifier
from lab.tables import (
    AuditEvent,
    Order,
    OrderedTest,
    Patient,
    Specimen,
    SpecimenEvent,
)
from testkit.mllp import ack_code
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from tests.hl7.conftest import logged

TESTS = ["NA", "K", "KREA", "CRP", "GLUK"]
# Log row INSERT with the catalog version, patient (found or registered with its
# identifiers and audit row), order with its tubes, tests, events and audit row,
# log row UPDATE.
NEW_PATIENT_CEILING = 4


class _Counter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.commits = 0

    def _statement(self, *args: Any) -> None:
        self.statements.append(str(args[2]))

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def __enter__(self) -> _Counter:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


@pytest.fixture
def inbox(committing: sessionmaker[Session]) -> Iterator[Inbox]:
    yield Inbox(committing)


def _send(inbox: Inbox, raw: bytes) -> str:
    stored = inbox.store(raw)
    acks = list(stored.acks)
    if stored.pending is not None:
        acks += inbox.process(stored.message_id, stored.pending)
    return ack_code(acks[-1])


def test_an_order_for_a_new_patient_takes_few_statements_and_one_commit(
    inbox: Inbox, hl7_engine: Engine, committing: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:10]
    first, second = synthetic_patients(2, seed=int(tag[:6], 16))
    # Warm the caches (catalog, compiled statements) with one order first.
    warm = oml_o21(control_id=f"W{tag}", placer=f"W{tag}", patient=first, tests=TESTS)
    assert _send(inbox, warm) == "AA"
    raw = oml_o21(control_id=f"C{tag}", placer=f"P{tag}", patient=second, tests=[*TESTS, "HB"])
    with _Counter(hl7_engine) as counted:
        assert _send(inbox, raw) == "AA"
    assert counted.commits == 1
    assert len(counted.statements) <= NEW_PATIENT_CEILING, counted.statements

    with committing() as session:
        order = session.scalars(select(Order).where(Order.placer_order_number == f"P{tag}")).one()
        patient = session.get(Patient, order.patient_id)
        assert patient is not None
        assert [(i.authority, i.value) for i in patient.identifiers] == [("FNR", second.fnr)]
        assert (patient.family_name, patient.given_name, patient.sex) == (
            second.family,
            second.given,
            second.sex,
        )
        tubes = session.scalars(
            select(Specimen).where(Specimen.order_id == order.id).order_by(Specimen.id)
        ).all()
        # Chemistry on one serum tube, the haemoglobin on its own tube.
        assert len(tubes) == 2
        assert all(t.patient_id == patient.id and t.status == "collected" for t in tubes)
        tests = session.scalars(
            select(OrderedTest).where(OrderedTest.order_id == order.id).order_by(OrderedTest.id)
        ).all()
        assert [t.test.code for t in tests] == [*TESTS, "HB"]
        assert {t.specimen_id for t in tests[:5]} == {tubes[0].id}
        assert tests[5].specimen_id == tubes[1].id
        assert all(t.status == "ordered" and t.requested_at is not None for t in tests)
        events = session.scalars(
            select(SpecimenEvent)
            .where(SpecimenEvent.specimen_id.in_([t.id for t in tubes]))
            .order_by(SpecimenEvent.id)
        ).all()
        assert [(e.specimen_id, e.event, e.detail) for e in events] == [
            (tube.id, "created", f"for order {order.filler_order_number}") for tube in tubes
        ]
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.patient_id == patient.id).order_by(AuditEvent.id)
        ).all()
        assert [a.action for a in audit] == ["patient.create", "order.place"]
        assert audit[0].entity_id == str(patient.id)
        assert audit[0].before is None
        assert audit[0].after == {
            "family_name": second.family,
            "given_name": second.given,
            "birth_date": second.born.isoformat() if second.born else None,
            "sex": second.sex,
            "identifiers": [f"FNR:{second.fnr}"],
        }
        assert audit[1].entity_id == order.filler_order_number
        assert audit[1].after == {
            "placer_order_number": f"P{tag}",
            "tests": [*TESTS, "HB"],
            "specimens": [t.accession_number for t in tubes],
            "priority": "routine",
        }
        assert all(a.channel == "hl7" and a.actor_name == "hl7:EPIC" for a in audit)


def test_an_order_for_a_known_patient_updates_it_before_the_order_is_placed(
    inbox: Inbox, committing: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:10]
    (patient,) = synthetic_patients(1, seed=int(tag[:6], 16))
    first = oml_o21(control_id=f"A{tag}", placer=f"A{tag}", patient=patient, tests=["NA"])
    assert _send(inbox, first) == "AA"
    renamed = type(patient)(
        fnr=patient.fnr, family="Omdøpt", given=patient.given, sex=patient.sex, born=patient.born
    )
    second = oml_o21(control_id=f"B{tag}", placer=f"B{tag}", patient=renamed, tests=["K"])
    assert _send(inbox, second) == "AA"
    with committing() as session:
        orders = session.scalars(
            select(Order).where(Order.placer_order_number.in_([f"A{tag}", f"B{tag}"]))
        ).all()
        assert len({o.patient_id for o in orders}) == 1
        stored = session.get(Patient, orders[0].patient_id)
        assert stored is not None and stored.family_name == "Omdøpt"
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.patient_id == stored.id)
            .order_by(AuditEvent.id)
        ).all()
        assert actions == ["patient.create", "order.place", "patient.update", "order.place"]


def test_a_known_placer_number_is_refused_and_keeps_nothing_of_the_second_order(
    inbox: Inbox, committing: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:10]
    first, second = synthetic_patients(2, seed=int(tag[:6], 16))
    assert (
        _send(inbox, oml_o21(control_id=f"A{tag}", placer=f"P{tag}", patient=first, tests=["NA"]))
        == "AA"
    )
    again = oml_o21(control_id=f"B{tag}", placer=f"P{tag}", patient=second, tests=["K"])
    assert _send(inbox, again) == "AE"
    with committing() as session:
        orders = session.scalars(select(Order).where(Order.placer_order_number == f"P{tag}")).all()
        assert len(orders) == 1
        # The second patient was registered in the refused order's transaction, rolled back.
        assert find_by_identifier(session, second.fnr, "FNR") is None


def test_a_refused_order_keeps_its_raw_message_and_answer_without_a_savepoint(
    inbox: Inbox, hl7_engine: Engine, committing: sessionmaker[Session]
) -> None:
    tag = uuid.uuid4().hex[:10]
    (patient,) = synthetic_patients(1, seed=int(tag[:6], 16))
    raw = oml_o21(control_id=f"C{tag}", placer=f"P{tag}", patient=patient, tests=["NA", "NOPE"])
    with _Counter(hl7_engine) as counted:
        stored = inbox.store(raw)
    assert not any("SAVEPOINT" in statement for statement in counted.statements)
    assert counted.commits == 1
    [ack] = stored.acks
    assert ack_code(ack) == "AE"
    [row] = logged(committing, f"C{tag}")
    assert (row.id, row.raw, row.status, row.ack_code) == (stored.message_id, raw, "error", "AE")
    assert row.ack is not None and row.ack.encode() == ack and "NOPE" in row.error
    assert row.finished_at is not None and row.patient_id is None
    with committing() as session:
        # The patient registered before the refusal went with the rolled-back transaction.
        assert find_by_identifier(session, patient.fnr, "FNR") is None
        assert session.scalar(select(Order).where(Order.placer_order_number == f"P{tag}")) is None


def test_a_repeat_stored_while_a_refusal_is_rolled_back_gets_the_one_stored_answer(
    inbox: Inbox, committing: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message on a second connection waits for the first one's log row; when the
    first is refused and rolls back, one of the two stores the message and its answer, and
    both connections send that answer."""
    tag = uuid.uuid4().hex[:10]
    (patient,) = synthetic_patients(1, seed=int(tag[:6], 16))
    raw = oml_o21(control_id=f"C{tag}", placer=f"P{tag}", patient=patient, tests=["NA"])
    real_handle = inbox_module.handle
    calls: list[int] = []
    second: dict[str, Stored] = {}

    def first_refused(session: Session, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return real_handle(session, **kwargs)
        thread = threading.Thread(target=lambda: second.update(stored=inbox.store(raw)))
        thread.start()
        _wait_for_a_lock_wait(committing)
        threads.append(thread)
        raise MessageRefused(
            [Problem(segment_id="ORC", code=ErrorCode.APPLICATION_INTERNAL_ERROR, message="no")]
        )

    threads: list[threading.Thread] = []
    monkeypatch.setattr(inbox_module, "handle", first_refused)
    first = inbox.store(raw)
    threads[0].join(30)
    [row] = logged(committing, f"C{tag}")
    assert first.acks == second["stored"].acks == (row.ack.encode(),)  # type: ignore[union-attr]
    assert {first.message_id, second["stored"].message_id} == {row.id}
    assert [first.duplicate, second["stored"].duplicate].count(True) == 1


def _wait_for_a_lock_wait(committing: sessionmaker[Session]) -> None:
    """Until some backend of this database waits for a lock (the second INSERT of the row)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with committing() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO hl7_message%'"
                )
            )
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the second store never waited for the first one's row")
