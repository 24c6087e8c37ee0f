"""The dispatcher against receivers over real sockets: faults, retries, dead letters, order."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from lab.config import Settings
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.validation import validate_strict
from lab.hl7.dispatcher import DeliveryPolicy, Dispatcher, Endpoint, MllpClient
from lab.main import create_app
from lab.tables import OUTBOUND, Hl7Message
from testkit.record import FakeRecord
from testkit.results import ten_results
from tests.hl7.conftest import unique

POLICY = DeliveryPolicy(
    connect_timeout=2, ack_timeout=0.5, max_attempts=3, backoff_base=0.01, backoff_max=0.05
)
pytestmark = pytest.mark.usefixtures("empty_outbox")


def queue(factory: sessionmaker[Session], patients: list[int]) -> list[str]:
    """One queued ORU per entry (for that patient ID); their control IDs in queue order."""
    ids = []
    with factory() as session:
        for patient_id in patients:
            control_id = unique("LAB")[:20]
            report = dataclasses.replace(ten_results(), control_id=control_id)
            session.add(
                Hl7Message(
                    direction=OUTBOUND,
                    status="queued",
                    partner="",
                    control_id=control_id,
                    message_type="ORU^R01",
                    raw=build_oru(report).encode(),
                    error="",
                    patient_id=patient_id,
                    attempts=0,
                    next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
                )
            )
            ids.append(control_id)
        session.commit()
    return ids


def statuses(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory() as session:
        rows = session.execute(
            select(Hl7Message.control_id, Hl7Message.status).where(Hl7Message.direction == OUTBOUND)
        ).all()
    return {control_id: status for control_id, status in rows}


async def rounds(dispatcher: Dispatcher, count: int, pause: float = 0.06) -> None:
    for _ in range(count):
        await dispatcher.run_once()
        await asyncio.sleep(pause)


def dispatcher_for(factory: sessionmaker[Session], port: int) -> Dispatcher:
    client = MllpClient(Endpoint(host="127.0.0.1", port=port), policy=POLICY)
    return Dispatcher(factory, client, policy=POLICY)


def run_with(receiver: FakeRecord, body: Callable[[int], object]) -> None:
    async def main() -> None:
        port = await receiver.start()
        try:
            await body(port)  # type: ignore[misc]
        finally:
            await receiver.stop()

    asyncio.run(main())


def test_receiver_down_then_up_delivers_all_once_in_patient_order(
    committing: sessionmaker[Session],
) -> None:
    ids = queue(committing, [1, 2, 1, 2, 1])
    receiver = FakeRecord()

    async def body(_: int) -> None:
        port = receiver.port
        await receiver.stop()  # down: connection refused
        dispatcher = dispatcher_for(committing, port)
        await rounds(dispatcher, 2)
        assert set(statuses(committing).values()) <= {"failed", "queued"}
        await receiver.start(port)
        await rounds(dispatcher, 6)
        await dispatcher.close()

    run_with(receiver, body)
    assert set(statuses(committing).values()) == {"acknowledged"}
    assert sorted(receiver.filed) == sorted(ids)
    for patient in ([ids[0], ids[2], ids[4]], [ids[1], ids[3]]):
        assert [c for c in receiver.received_ids if c in patient] == patient  # never overtaken


def test_slow_receiver_times_out_then_the_retry_is_acknowledged(
    committing: sessionmaker[Session],
) -> None:
    [control_id] = queue(committing, [11])
    receiver = FakeRecord(behaviour=lambda c, attempt: "slow" if attempt == 1 else "AA")

    async def body(port: int) -> None:
        dispatcher = dispatcher_for(committing, port)
        await rounds(dispatcher, 3, pause=0.1)
        await dispatcher.close()

    run_with(receiver, body)
    assert statuses(committing) == {control_id: "acknowledged"}
    assert receiver.filed_ids == [control_id]  # the record files it once (same MSH-10)


def test_a_receiver_closing_mid_ack_is_retried(committing: sessionmaker[Session]) -> None:
    [control_id] = queue(committing, [21])
    receiver = FakeRecord(behaviour=lambda c, attempt: "cut" if attempt == 1 else "AA")

    async def body(port: int) -> None:
        dispatcher = dispatcher_for(committing, port)
        await rounds(dispatcher, 3)
        await dispatcher.close()

    run_with(receiver, body)
    assert statuses(committing) == {control_id: "acknowledged"}
    assert receiver.received_ids == [control_id, control_id]


def test_ae_retries_then_dead_without_blocking_others_and_resend_delivers(
    committing: sessionmaker[Session], hl7_engine: Engine, tokens: dict[str, str]
) -> None:
    poison, later, other = queue(committing, [31, 31, 32])
    answers = {"mode": "AE"}
    receiver = FakeRecord(behaviour=lambda c, a: answers["mode"] if c == poison else "AA")

    async def body(port: int) -> None:
        dispatcher = dispatcher_for(committing, port)
        await rounds(dispatcher, 6)
        assert statuses(committing) == {poison: "dead", later: "queued", other: "acknowledged"}
        with committing() as session:
            row = session.scalars(select(Hl7Message).where(Hl7Message.control_id == poison)).one()
            assert row.attempts == POLICY.max_attempts and row.ack_code == "AE"
            message_id = row.id
        app = create_app(Settings(), engine=hl7_engine, session_factory=committing)
        with TestClient(app) as client:
            refused = client.post(
                f"/api/v1/messages/{message_id}/resend",
                headers={"Authorization": f"Bearer {tokens['technician']}"},
            )
            assert refused.status_code == 403
            dead = client.get(
                "/api/v1/messages?direction=out&status=dead",
                headers={"Authorization": f"Bearer {tokens['admin']}"},
            )
            assert [m["control_id"] for m in dead.json()] == [poison]
            resent = client.post(
                f"/api/v1/messages/{message_id}/resend",
                headers={"Authorization": f"Bearer {tokens['physician']}"},
            )
            assert resent.status_code == 200 and resent.json()["status"] == "queued"
        answers["mode"] = "AA"
        await rounds(dispatcher, 3)
        await dispatcher.close()

    run_with(receiver, body)
    assert set(statuses(committing).values()) == {"acknowledged"}
    assert receiver.filed_ids.index(poison) < receiver.filed_ids.index(later)


def test_ar_parks_at_once(committing: sessionmaker[Session]) -> None:
    [control_id] = queue(committing, [41])
    receiver = FakeRecord(behaviour=lambda c, a: "AR")

    async def body(port: int) -> None:
        dispatcher = dispatcher_for(committing, port)
        await rounds(dispatcher, 3)
        await dispatcher.close()

    run_with(receiver, body)
    assert statuses(committing) == {control_id: "dead"}
    assert receiver.received_ids == [control_id]


def test_two_dispatchers_never_deliver_the_same_message_twice(
    committing: sessionmaker[Session],
) -> None:
    ids = queue(committing, [50 + n % 7 for n in range(40)])
    receiver = FakeRecord()

    async def body(port: int) -> None:
        first, second = dispatcher_for(committing, port), dispatcher_for(committing, port)
        for _ in range(12):
            await asyncio.gather(first.run_once(), second.run_once())
        await first.close()
        await second.close()

    run_with(receiver, body)
    assert sorted(receiver.received_ids) == sorted(ids)  # each exactly once
    assert set(statuses(committing).values()) == {"acknowledged"}


def test_hl7apy_mllp_server_receives_a_strictly_valid_oru(
    committing: sessionmaker[Session],
) -> None:
    """hl7apy's MLLPServer plays the record; it closes the connection after each message."""
    from hl7apy.mllp import AbstractHandler, MLLPServer

    got: list[str] = []

    class Handler(AbstractHandler):  # type: ignore[misc]
        def reply(self) -> str:
            got.append(self.incoming_message)
            control_id = self.incoming_message.split("\r")[0].split("|")[9]
            ack = f"MSH|^~\\&|EHR|HMN|LAB|STOLAV|20261127||ACK^R01^ACK|X{control_id}|P|2.5.1\r"
            # hl7apy's server writes the reply as given: the handler frames it in MLLP itself.
            return f"\x0b{ack}MSA|AA|{control_id}\r\x1c\r"

    server = MLLPServer("127.0.0.1", 0, {"ORU^R01^ORU_R01": (Handler,)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ids = queue(committing, [61, 61])

        async def main() -> None:
            dispatcher = dispatcher_for(committing, server.server_address[1])
            await rounds(dispatcher, 4)
            await dispatcher.close()

        asyncio.run(main())
    finally:
        server.shutdown()
        server.server_close()
    assert set(statuses(committing).values()) == {"acknowledged"}
    assert len(got) == len(ids)
    for message in got:
        validate_strict(message)


def test_a_round_records_its_outcomes_together_and_each_once(
    committing: sessionmaker[Session], hl7_engine: Engine
) -> None:
    """120 messages of 120 patients in one round: their outcomes go to the database in groups
    (one UPDATE for up to `record_every`), not one transaction each; every message is
    delivered once and recorded acknowledged with its ACK code. (Failures recorded the same way:
    the retry and dead-letter tests above.)"""
    ids = queue(committing, list(range(1000, 1120)))
    receiver = FakeRecord()
    writes: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().startswith("UPDATE hl7_message AS m"):
            writes.append(statement)

    async def body(port: int) -> None:
        policy = dataclasses.replace(POLICY, record_every=50, record_after=60)
        client = MllpClient(Endpoint(host="127.0.0.1", port=port), policy=policy)
        dispatcher = Dispatcher(committing, client, policy=policy)
        assert await dispatcher.run_once() == 120
        await dispatcher.close()

    event.listen(hl7_engine, "before_cursor_execute", count)
    try:
        run_with(receiver, body)
    finally:
        event.remove(hl7_engine, "before_cursor_execute", count)
    assert len(writes) == 3  # 50 + 50 + 20
    assert sorted(receiver.received_ids) == sorted(ids)
    assert set(statuses(committing).values()) == {"acknowledged"}
    with committing() as session:
        rows = session.execute(
            select(Hl7Message.ack_code, Hl7Message.finished_at, Hl7Message.error).where(
                Hl7Message.control_id.in_(ids)
            )
        ).all()
    assert {(code, error) for code, _, error in rows} == {("AA", "")}
    assert all(finished is not None for _, finished, _ in rows)
