"""The set-based release (`outbox._release`): the ORU it builds from plain rows is byte for byte
the one the ORM's builder makes of the same results; the order's status it refreshes in SQL is
the one `orders.refresh_status` decides; an autoverified tube costs two statements at most
beside its recording; and two tubes of one order recorded at once leave no order held."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import ObservationStatus, ResultStatus
from lab.hl7.codec.validation import validate_strict
from lab.orders import service as orders
from lab.patients.service import Demographics, IdentifierInput
from lab.results import outbox
from lab.results import service as results
from lab.results.judging import NO_RULES, ActiveRules
from lab.results.outbound import build_report
from lab.results.service import Measurement
from lab.rules import SerumIndices
from lab.specimens import service as specimens
from lab.tables import (
    OUTBOUND,
    Hl7Message,
    Order,
    OrderedTest,
    PendingRelease,
    ReportedResult,
    Result,
)
from lab.tables import TestStatus as OrderedTestStatus
from lab.users.roles import Role
from testkit.orders import place
from testkit.patients import KARI_FNR
from tests.conftest import actor
from tests.hl7.conftest import unique
from tests.rules.helpers import demo_ruleset

BIO = actor(Role.TECHNICIAN)
LEGE = actor(Role.PHYSICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 27, 9, 30, 15, tzinfo=UTC)


def hold(monkeypatch: pytest.MonkeyPatch, minutes: int) -> None:
    monkeypatch.setattr(outbox, "hold_time", lambda: timedelta(minutes=minutes))


def patient() -> Demographics:
    """A national number and a local one: PID-3 repeats, each mapped its own way."""
    return Demographics(
        identifiers=[
            IdentifierInput(value=KARI_FNR, authority="FNR"),
            IdentifierInput(value=unique("L")[:20], authority="HP-LOCAL"),
        ],
        family_name="Østbø",
        given_name="Kari",
        birth_date=date(1984, 3, 15),
        sex="F",
    )


def measured(
    db: Session, order: Order, values: dict[str, tuple[str, dict[str, object]]]
) -> dict[str, int]:
    """Every tube of `order` received and its tests measured; {test code: result id}."""
    ids: dict[str, int] = {}
    for tube in specimens.tubes_of_order(db, order.id):
        specimens.receive(db, actor=BIO, number=tube.accession_number)
        for ordered in specimens.tests_of(db, tube):
            value, extra = values[ordered.test.code]
            outcome = results.record(
                db,
                actor=ANALYSER,
                measurement=Measurement(
                    accession_number=tube.accession_number,
                    test_code=ordered.test.code,
                    value=value,
                    observed_at=AT,
                    instrument="cobas-1",
                    flag_profile="cobas",
                    **extra,  # type: ignore[arg-type]
                ),
                # TSH left for a person: the order stays open until it is cancelled.
                rules=NO_RULES
                if ordered.test.code == "TSH"
                else ActiveRules(autoverification=demo_ruleset()),
            )
            assert outcome.result_id is not None
            ids[ordered.test.code] = outcome.result_id
    return ids


def orm_built(db: Session, message: Hl7Message, order: Order, now: datetime) -> bytes:
    """The same message made the ORM's way: the reported results as ORM objects, the order's
    tests, tubes and patient through relationships, `outbound.build_report`."""
    reported = db.scalars(
        select(ReportedResult)
        .where(ReportedResult.message_id == message.id)
        .order_by(ReportedResult.result_id)
    ).all()
    parts = []
    for row in reported:
        result = db.get(Result, row.result_id)
        assert result is not None and row.result_version == result.version
        parts.append((result, ObservationStatus(row.observation_status)))
    finals = any(status is ObservationStatus.FINAL for _, status in parts)
    status = ResultStatus.FINAL if finals else ResultStatus.CANCELLED
    report = build_report(db, order, parts, status, control_id=message.control_id, now=now)
    return build_oru(report).encode()


def outbound(db: Session, order_id: int) -> list[Hl7Message]:
    return list(
        db.scalars(
            select(Hl7Message)
            .where(Hl7Message.direction == OUTBOUND, Hl7Message.order_id == order_id)
            .order_by(Hl7Message.id)
        )
    )


def test_the_released_oru_is_the_one_the_orm_builder_makes(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tubes; values normal, flagged, `<`, haemolysed (a coded comment), a comment typed by
    the verifier, and the last open test cancelled (OBX-11 X), which closes the order and sends
    it all in one ORU: compared with what the ORM's builder makes of the same results."""
    hold(monkeypatch, 60)
    monkeypatch.setattr(outbox, "utcnow", lambda: LATER)
    order = place(
        db,
        BIO,
        placer=unique("P"),
        tests=["HB", "NA", "K", "KREA", "CRP", "TSH"],
        patient=patient(),
    )
    ids = measured(
        db,
        order,
        {
            "HB": ("19.5", {}),  # above the interval: H
            "NA": ("141", {}),
            "K": ("4.1", {"indices": SerumIndices(h=Decimal("80"))}),  # HEM: interference
            "KREA": ("80", {}),
            "CRP": ("<5", {}),
            "TSH": ("2.1", {}),
        },
    )
    for code in ("HB", "NA", "K", "KREA", "CRP"):
        result = db.get(Result, ids[code])
        assert result is not None
        if result.status != "verified":
            results.verify(db, actor=LEGE, result_id=ids[code], comment=f"checked {code}")
    assert outbound(db, order.id) == []  # held: TSH is open
    results.cancel(db, actor=LEGE, result_id=ids["TSH"], reason="haemolysed")  # closes it
    db.flush()
    (message,) = outbound(db, order.id)
    stored = db.get(Order, order.id)
    assert stored is not None and stored.status == "completed"
    raw = message.raw
    assert raw == orm_built(db, message, stored, LATER)
    observations = [s.split(b"|") for s in raw.split(b"\r") if s.startswith(b"OBX|")]
    assert [(o[3].split(b"^")[3], o[11]) for o in observations] == [
        (b"HB", b"F"),
        (b"NA", b"F"),
        (b"K", b"F"),
        (b"KREA", b"F"),
        (b"CRP", b"F"),
        (b"TSH", b"X"),
    ]
    assert b"HEM: " in raw and b"NTE|2||checked K" in raw and b"|<5|" in raw
    assert message.control_id == f"LAB-{message.id}" and message.status == "queued"
    validate_strict(parse_message(raw))
    assert db.get(PendingRelease, order.id) is None
    assert outbox.release_order(db, stored, now=LATER) is None  # nothing is reported twice


def test_an_autoverified_tube_is_released_in_two_statements_as_the_orm_builder_would(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold(monkeypatch, 60)
    monkeypatch.setattr("lab.results.recording.utcnow", lambda: LATER)
    order = place(db, BIO, placer=unique("P"), tests=["HB", "NA", "K"], patient=patient())
    tubes = {
        t.accession_number: [o.test.code for o in specimens.tests_of(db, t)]
        for t in specimens.tubes_of_order(db, order.id)
    }
    assert len(tubes) == 2
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = db.get_bind()
    per_tube = []
    released = outbox.release_autoverified
    in_release: list[int] = []

    def counted(session: Session, order_id: int, *, now: datetime) -> int | None:
        before = len(statements)
        try:
            return released(session, order_id, now=now)
        finally:
            in_release.append(len(statements) - before)

    monkeypatch.setattr(outbox, "release_autoverified", counted)
    values = {"HB": "14.1", "NA": "141", "K": "4.1"}
    for number, codes in tubes.items():
        specimens.receive(db, actor=BIO, number=number)
        db.flush()
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            outcomes = results.record_tube(
                db,
                actor=ANALYSER,
                measurements=[
                    Measurement(
                        accession_number=number,
                        test_code=code,
                        value=values[code],
                        observed_at=AT,
                        instrument="cobas-1",
                        flag_profile="cobas",
                    )
                    for code in codes
                ],
                rules=ActiveRules(autoverification=demo_ruleset()),
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert {o.status for o in outcomes} == {"verified"}
        per_tube.append(len(statements))
    # The first tube is held (one statement: the order's status, the hold); the second
    # completes the order: decided and read (one), queued (one). The order's lock rides in
    # the tube's write: nothing else is added to the recording.
    assert in_release == [1, 2], (in_release, per_tube)
    assert [n - extra for n, extra in zip(per_tube, in_release, strict=True)] == [
        per_tube[0] - 1
    ] * 2
    (message,) = outbound(db, order.id)
    db.expire_all()
    stored = db.get(Order, order.id)
    assert stored is not None and stored.status == "completed"
    assert db.get(PendingRelease, order.id) is None
    assert message.raw == orm_built(db, message, stored, LATER)


_STATUSES = st.lists(st.sampled_from(list(OrderedTestStatus)), min_size=1, max_size=4)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(statuses=_STATUSES, was=st.sampled_from(["active", "completed"]))
def test_the_order_status_is_the_one_refresh_status_decides(
    db: Session, statuses: list[OrderedTestStatus], was: str
) -> None:
    codes = ["NA", "K", "KREA", "CRP"][: len(statuses)]
    order = place(db, BIO, placer=unique("P"), tests=codes)
    tests = db.scalars(
        select(OrderedTest).where(OrderedTest.order_id == order.id).order_by(OrderedTest.id)
    ).all()
    for ordered, status in zip(tests, statuses, strict=True):
        db.execute(
            update(OrderedTest).where(OrderedTest.id == ordered.id).values(status=status.value)
        )
    db.execute(update(Order).where(Order.id == order.id).values(status=was))
    db.flush()
    db.expire_all()
    expected = db.get(Order, order.id)
    assert expected is not None
    orders.refresh_status(expected)
    decided = expected.status
    db.expire_all()
    outbox.release_autoverified(db, order.id, now=AT)
    stored = db.execute(
        text("SELECT status FROM lab_order WHERE id = :id"), {"id": order.id}
    ).scalar_one()
    assert stored == decided
    held = db.get(PendingRelease, order.id) is not None
    assert held == (decided == "active")


def test_two_tubes_of_one_order_recorded_at_once_release_the_order_once(
    committing: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tube A is recorded and not committed yet when tube B's recording reaches the order: B
    waits for A's lock in its write, and then sees A's results verified, so B releases the
    whole order in one ORU (A alone would have held it)."""
    hold(monkeypatch, 60)
    with committing() as setup:
        order = place(setup, BIO, placer=unique("P"), tests=["HB", "NA", "K"], patient=patient())
        tubes = {
            t.accession_number: [o.test.code for o in specimens.tests_of(setup, t)]
            for t in specimens.tubes_of_order(setup, order.id)
        }
        for number in tubes:
            specimens.receive(setup, actor=BIO, number=number)
        setup.commit()
        order_id = order.id
    values = {"HB": "14.1", "NA": "141", "K": "4.1"}
    rules = ActiveRules(autoverification=demo_ruleset())

    def record(session: Session, number: str) -> None:
        results.record_tube(
            session,
            actor=ANALYSER,
            measurements=[
                Measurement(
                    accession_number=number,
                    test_code=code,
                    value=values[code],
                    observed_at=AT,
                    instrument="cobas-1",
                    flag_profile="cobas",
                )
                for code in tubes[number]
            ],
            rules=rules,
        )

    first, second = tubes
    failures: list[BaseException] = []
    with committing() as a:
        record(a, first)  # the order is locked by A's write now

        def b_records() -> None:
            try:
                with committing() as b:
                    record(b, second)
                    b.commit()
            except BaseException as exc:
                failures.append(exc)

        other = threading.Thread(target=b_records)
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # B waits for the order's lock
        a.commit()
    other.join(timeout=30)
    assert not other.is_alive() and failures == []
    with committing() as check:
        messages = outbound(check, order_id)
        assert len(messages) == 1
        obx = [s for s in messages[0].raw.split(b"\r") if s.startswith(b"OBX|")]
        assert len(obx) == 3
        assert check.get(PendingRelease, order_id) is None
        stored = check.get(Order, order_id)
        assert stored is not None and stored.status == "completed"


_RANGES = {"NA": (125, 150), "K": (2.8, 6.2), "KREA": (30, 400), "CRP": (1, 140), "GLUK": (2.5, 20)}
_COMMENTS = st.text(alphabet=st.sampled_from("abc ÆØÅæøå|^~\\&<>.-"), max_size=12)


@st.composite
def _results(draw: st.DrawFn) -> list[tuple[str, str, str, bool]]:
    """(test, value as sent, the verifier's comment, cancelled) for some serum tests."""
    codes = draw(st.lists(st.sampled_from(sorted(_RANGES)), min_size=1, max_size=5, unique=True))
    out = []
    for code in codes:
        low, high = _RANGES[code]
        number = draw(st.floats(min_value=low, max_value=high, allow_nan=False))
        places = draw(st.integers(min_value=0, max_value=2))
        value = f"{number:.{places}f}"
        if code in ("CRP", "KREA") and draw(st.booleans()):
            value = "<" + value
        out.append((code, value, draw(_COMMENTS), draw(st.integers(0, 4)) == 0))
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=_results())
def test_any_released_order_is_the_oru_the_orm_builder_makes(
    db: Session, drawn: list[tuple[str, str, str, bool]]
) -> None:
    """Property: whatever the values (decimals, `<`), the verifiers' comments (delimiters and
    escapes, Norwegian letters) and which tests are cancelled, the ORU made from the rows is
    byte for byte the ORM builder's, and every result goes out once with its version."""
    order = place(
        db, BIO, placer=unique("P"), tests=[code for code, *_ in drawn], patient=patient()
    )
    (tube,) = specimens.tubes_of_order(db, order.id)
    specimens.receive(db, actor=BIO, number=tube.accession_number)
    for code, value, comment, cancelled in drawn:
        outcome = results.record(
            db,
            actor=ANALYSER,
            measurement=Measurement(
                accession_number=tube.accession_number,
                test_code=code,
                value=value,
                observed_at=AT,
                instrument="cobas-1",
                flag_profile="cobas",
            ),
            rules=NO_RULES,
        )
        assert outcome.result_id is not None
        if cancelled:
            results.cancel(db, actor=LEGE, result_id=outcome.result_id, reason=comment or "x")
        else:
            results.verify(db, actor=LEGE, result_id=outcome.result_id, comment=comment)
    db.flush()
    locked = db.get(Order, order.id, with_for_update=True)
    assert locked is not None
    outbox.release_order(db, locked, now=LATER)
    messages = outbound(db, order.id)
    assert messages  # with no hold in the tests' settings, or at the end: something went out
    for message in messages:
        assert message.raw == orm_built(db, message, locked, _sent_at(message))
    reported = db.scalars(
        select(ReportedResult.result_id)
        .join(Hl7Message, Hl7Message.id == ReportedResult.message_id)
        .where(Hl7Message.order_id == order.id)
    ).all()
    assert len(reported) == len(set(reported)) == len(drawn)


def _sent_at(message: Hl7Message) -> datetime:
    """MSH-7 of a queued message: the `now` it was built with."""
    msh = parse_message(message.raw).segment("MSH")
    assert msh is not None
    return datetime.strptime(msh.text(7), "%Y%m%d%H%M%S%z")
