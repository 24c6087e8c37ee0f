"""A dispatcher that is gone leaves its claims to the others at once, not after `stale_after`.

Each dispatcher holds its claim number as a session-level advisory lock; a `sent` message whose
number no session holds is taken over at the next round. These tests end a claimant the ways a
node is lost: its process SIGKILLed mid-round (a real child process, a real record socket), its
database session terminated, its session closed; and check that a live claimant's messages are
left alone and that a claimant whose claims were taken over writes nothing over them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from lab.hl7.dispatcher import DeliveryFailed, Dispatcher, Outcome
from lab.tables import OUTBOUND, Hl7Message
from testkit.database import ScratchDatabase
from testkit.record import FakeRecord
from tests.hl7.test_dispatcher import dispatcher_for, queue, run_with, statuses

pytestmark = pytest.mark.usefixtures("empty_outbox")

# A dispatcher in a process of its own, as `lab serve` runs it: it claims every due message and
# waits for the ACK of the first from a record that never answers, until it is killed.
_CHILD = """
import asyncio, sys
from lab.db import make_engine, make_session_factory
from lab.hl7.dispatcher import DeliveryPolicy, Dispatcher, Endpoint, MllpClient

policy = DeliveryPolicy(ack_timeout=600)
factory = make_session_factory(make_engine(sys.argv[1], pool_size=2))
client = MllpClient(Endpoint(host="127.0.0.1", port=int(sys.argv[2])), policy=policy)
asyncio.run(Dispatcher(factory, client, policy=policy).run_once())
"""


@pytest.fixture
def silent_record() -> Iterator[int]:
    """A port whose connections are taken by the kernel and never answered."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield int(server.getsockname()[1])


def claims(factory: sessionmaker[Session]) -> dict[str, int | None]:
    """control_id -> claim number of every outbound message in flight."""
    with factory() as session:
        rows = session.execute(
            select(Hl7Message.control_id, Hl7Message.claimed_by).where(
                Hl7Message.direction == OUTBOUND, Hl7Message.status == "sent"
            )
        ).all()
    return {control_id: claimant for control_id, claimant in rows}


def terminate(engine: Engine, number: int) -> None:
    """End the session holding claim number `number` from another session, as an operator's
    pg_terminate_backend or a lost connection would."""
    with engine.connect() as connection:
        pid = connection.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                "AND objid::bigint = :n AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            {"n": number},
        ).scalar_one()
        connection.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


def test_a_dispatcher_killed_mid_round_is_taken_over_within_seconds(
    committing: sessionmaker[Session], committed_database: ScratchDatabase, silent_record: int
) -> None:
    ids = queue(committing, [700 + n for n in range(12)])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, committed_database.runtime_url, str(silent_record)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while set(claims(committing)) != set(ids):
            assert child.poll() is None, "the claiming process ended by itself"
            assert time.monotonic() < deadline, f"not claimed: {statuses(committing)}"
            time.sleep(0.05)
        [number] = set(claims(committing).values())
        assert number is not None
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    killed_at = time.monotonic()
    receiver = FakeRecord()
    taken_after: list[float] = []

    async def body(port: int) -> None:
        # A dispatcher of the other node, with the default stale limit (300 s).
        dispatcher = dispatcher_for(committing, port)
        while time.monotonic() - killed_at < 30 and len(receiver.filed) < len(ids):
            await dispatcher.run_once()
            await asyncio.sleep(0.2)  # as often as `lab serve` polls
        taken_after.append(time.monotonic() - killed_at)
        await dispatcher.close()

    run_with(receiver, body)
    assert sorted(receiver.filed) == sorted(ids)
    assert set(statuses(committing).values()) == {"acknowledged"}
    assert taken_after[0] < 5, f"taken over {taken_after[0]:.1f} s after the kill"
    assert claims(committing) == {}


def test_a_live_claimant_keeps_its_claims_and_a_terminated_one_loses_them(
    committing: sessionmaker[Session], hl7_engine: Engine
) -> None:
    ids = queue(committing, [800, 801, 802])
    receiver = FakeRecord()

    async def body(port: int) -> None:
        first, second = dispatcher_for(committing, port), dispatcher_for(committing, port)
        claimed = await asyncio.to_thread(first.claim, datetime.now(UTC))
        assert [c.control_id for c in claimed] == ids
        assert await second.run_once() == 0  # the first lives: its claims are its own
        assert first.claimant.number is not None
        await asyncio.to_thread(terminate, hl7_engine, first.claimant.number)
        assert await second.run_once() == 3  # its session ended: taken over at once
        # The first goes on and answers for what it claimed: nothing is written over the
        # second's outcomes.
        failed = [
            Outcome(claimed=c, at=datetime.now(UTC), failure=DeliveryFailed("late"))
            for c in claimed
        ]
        await asyncio.to_thread(first.record_all, failed)
        assert set(statuses(committing).values()) == {"acknowledged"}
        # Its next round notices the lost session and claims under a new number.
        lost = first.claimant.number
        [later] = queue(committing, [803])
        assert await first.run_once() == 1
        assert first.claimant.number not in (None, lost)
        assert later in receiver.filed
        await first.close()
        await second.close()

    run_with(receiver, body)
    assert len(receiver.received_ids) == 4  # each of the four once: no round sent one twice
    assert set(receiver.received_ids) == set(receiver.filed) >= set(ids)
    assert set(statuses(committing).values()) == {"acknowledged"}


def test_a_closed_dispatcher_leaves_its_claims_to_the_next(
    committing: sessionmaker[Session],
) -> None:
    ids = queue(committing, [900, 901])
    receiver = FakeRecord()

    async def body(port: int) -> None:
        first: Dispatcher = dispatcher_for(committing, port)
        await asyncio.to_thread(first.claim, datetime.now(UTC))
        await first.close()
        second = dispatcher_for(committing, port)
        assert await second.run_once() == 2
        await second.close()

    run_with(receiver, body)
    assert sorted(receiver.filed) == sorted(ids)
    assert set(statuses(committing).values()) == {"acknowledged"}


def test_a_round_that_could_not_write_its_outcomes_is_claimed_again_at_the_next(
    committing: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails the round's write: its messages stay `sent` under this dispatcher's
    own number, and its next round (never two at once) takes them again at once."""
    ids = queue(committing, [950, 951])
    receiver = FakeRecord()

    async def body(port: int) -> None:
        dispatcher = dispatcher_for(committing, port)

        def refused(outcomes: list[Outcome]) -> list[str]:
            raise RuntimeError("the database refused the write")

        monkeypatch.setattr(dispatcher, "record_all", refused)
        with pytest.raises(RuntimeError):
            await dispatcher.run_once()
        assert set(claims(committing)) == set(ids)
        monkeypatch.undo()
        assert await dispatcher.run_once() == 2
        await dispatcher.close()

    run_with(receiver, body)
    assert set(statuses(committing).values()) == {"acknowledged"}
    assert sorted(receiver.received_ids) == sorted(ids + ids)  # at least once: each went twice
