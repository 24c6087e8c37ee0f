"""The outbox hook in the results service: what goes out, when, and that it is valid v2.5.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.codec.er7 import Message, parse_message
from lab.hl7.codec.validation import validate_strict
from lab.hl7.release import release_due
from lab.results import outbox
from lab.results import service as results
from lab.results.service import Measurement
from lab.specimens import service as specimens
from lab.tables import OUTBOUND, Hl7Message, PendingRelease
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor
from tests.hl7.conftest import unique

BIO = actor(Role.TECHNICIAN)
LEGE = actor(Role.PHYSICIAN)


def hold(monkeypatch: pytest.MonkeyPatch, minutes: int) -> None:
    monkeypatch.setattr(outbox, "hold_time", lambda: timedelta(minutes=minutes))


def resulted(db: Session, codes: list[str], values: list[str]) -> list[int]:
    """An order of serum tests, received and measured; the result IDs."""
    order = place(db, BIO, placer=unique("P"), tests=codes)
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return [
        results.record(
            db,
            actor=BIO,
            measurement=Measurement(
                accession_number=number,
                test_code=code,
                value=value,
                observed_at=datetime(2026, 11, 27, 8, 0, tzinfo=UTC),
            ),
        ).result_id
        for code, value in zip(codes, values, strict=True)
    ]


def queued(db: Session) -> list[Message]:
    rows = db.scalars(
        select(Hl7Message).where(Hl7Message.direction == OUTBOUND).order_by(Hl7Message.id)
    ).all()
    return [parse_message(row.raw) for row in rows]


def obx(message: Message) -> list[tuple[str, str, str, str]]:
    """(OBX-3.1 LOINC, OBX-3.4 local code, OBX-5, OBX-11) of each OBX."""
    return [
        (s.component(3, 1), s.component(3, 4), s.text(5), s.text(11))
        for s in message.segments_named("OBX")
    ]


def obr25(message: Message) -> str:
    segment = message.segment("OBR")
    assert segment is not None
    return segment.text(25)


def test_without_hold_each_verification_goes_out_at_once_and_is_valid(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold(monkeypatch, 0)
    na, k = resulted(db, ["NA", "K"], ["141", "4.1"])
    results.verify(db, actor=LEGE, result_id=na)
    [first] = queued(db)
    assert obx(first) == [("2951-2", "NA", "141", "F")]
    assert obr25(first) == "F"
    validate_strict(first)
    results.verify(db, actor=LEGE, result_id=k)
    assert [obx(m) for m in queued(db)][1] == [("2823-3", "K", "4.1", "F")]


def test_held_until_the_order_is_complete(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    hold(monkeypatch, 60)
    na, k, krea = resulted(db, ["NA", "K", "KREA"], ["141", "4.1", "80"])
    results.verify(db, actor=LEGE, result_id=na)
    results.verify(db, actor=LEGE, result_id=k)
    assert queued(db) == []
    assert db.scalars(select(PendingRelease)).all() != []
    results.verify(db, actor=LEGE, result_id=krea)
    [message] = queued(db)
    assert [o[1] for o in obx(message)] == ["NA", "K", "KREA"]  # the whole order in one ORU
    validate_strict(message)


def test_held_results_go_out_when_the_hold_time_has_passed(
    db: Session, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    hold(monkeypatch, 60)
    na, _k = resulted(db, ["NA", "K"], ["141", "4.1"])
    results.verify(db, actor=LEGE, result_id=na)
    db.commit()
    now = datetime.now(UTC)
    assert release_due(session_factory, now=now + timedelta(minutes=30)) == 0
    assert release_due(session_factory, now=now + timedelta(minutes=61)) == 1
    db.expire_all()
    [message] = queued(db)
    assert obx(message) == [("2951-2", "NA", "141", "F")]
    assert release_due(session_factory, now=now + timedelta(minutes=120)) == 0  # reported once


def test_a_correction_goes_out_at_once_as_c(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    hold(monkeypatch, 0)
    [na] = resulted(db, ["NA"], ["141"])
    results.verify(db, actor=LEGE, result_id=na)
    hold(monkeypatch, 60)
    results.correct(db, actor=LEGE, result_id=na, value="145", reason="wrong tube")
    final, corrected = queued(db)
    assert obx(corrected) == [("2951-2", "NA", "145", "C")]
    assert obr25(corrected) == "C"
    assert corrected.control_id != final.control_id
    validate_strict(corrected)


def test_cancellations(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    hold(monkeypatch, 60)
    na, k = resulted(db, ["NA", "K"], ["141", "9.9"])
    results.verify(db, actor=LEGE, result_id=na)
    results.cancel(db, actor=LEGE, result_id=k, reason="hemolysed")  # completes the order
    [message] = queued(db)
    assert obx(message) == [("2951-2", "NA", "141", "F"), ("2823-3", "K", "", "X")]
    validate_strict(message)
    results.cancel(db, actor=LEGE, result_id=na, reason="wrong patient")  # withdrawn after report
    withdrawn = queued(db)[-1]
    assert obx(withdrawn) == [("2951-2", "NA", "", "D")]
    validate_strict(withdrawn)


def test_a_cancelled_result_goes_at_once_while_the_rest_is_held(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold(monkeypatch, 60)
    na, k, _krea = resulted(db, ["NA", "K", "KREA"], ["141", "9.9", "80"])
    results.verify(db, actor=LEGE, result_id=na)
    assert queued(db) == []  # held: the order is not complete
    results.cancel(db, actor=LEGE, result_id=k, reason="hemolysed")
    [message] = queued(db)  # the cancellation is not held by the release policy
    assert obx(message) == [("2823-3", "K", "", "X")]
    assert obr25(message) == "X"
    validate_strict(message)
