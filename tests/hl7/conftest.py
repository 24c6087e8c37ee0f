"""Fixtures of the HL7 socket tests: a committing database, a listener on a real port, and a
small MLLP receiver that plays the record (with faults on demand).

Socket tests commit from other threads, so they use their own engine on the test database
rather than the rolled-back `db` session, and unique placer numbers, control IDs and patients
so that tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, delete, text
from sqlalchemy.orm import Session, sessionmaker

from lab.db import make_engine, make_session_factory
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.mllp import MllpDecoder, frame
from lab.hl7.inbox import Inbox
from lab.hl7.listener import Hl7Listener
from lab.tables import OUTBOUND, Hl7Message, ReportedResult
from tests.conftest import TestDatabase
from tests.factories import national_number

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a background thread, for servers the test talks to over sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def hl7_engine(committed_database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(committed_database.url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def committing(hl7_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(hl7_engine)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@dataclass
class RunningListener:
    listener: Hl7Listener
    port: int
    inbox: Inbox


@pytest.fixture
def listener(
    committing: sessionmaker[Session], loop_thread: LoopThread
) -> Iterator[RunningListener]:
    inbox = Inbox(committing)
    server = Hl7Listener(inbox, host="127.0.0.1", port=0)
    loop_thread.run(server.start())
    yield RunningListener(listener=server, port=server.bound_port, inbox=inbox)
    loop_thread.run(server.stop())


@pytest.fixture
def empty_outbox(hl7_engine: Engine) -> Iterator[None]:
    """Outbound rows are global work for any dispatcher: start and end each test without any."""

    def clear() -> None:
        with Session(hl7_engine) as session:
            session.execute(delete(ReportedResult))
            session.execute(delete(Hl7Message).where(Hl7Message.direction == OUTBOUND))
            session.execute(text("DELETE FROM hl7_pending_release"))
            session.commit()

    clear()
    yield
    clear()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def random_fnr() -> str:
    born = date(random.randint(1930, 1999), random.randint(1, 12), random.randint(1, 28))
    return national_number(born, random.randint(0, 450))


def oml(
    *,
    control_id: str,
    placer: str,
    fnr: str,
    tests: tuple[tuple[str, str], ...] = (("HB", "L"),),
    control: str = "NW",
    ack_modes: str = "",
    extra_pid3: str = "",
    family: str = "Østbø",
) -> str:
    """An OML^O21 (one ORC+OBR group per test, all under one placer number)."""
    accept, application = ([*ack_modes.split("|"), "", ""])[:2] if ack_modes else ("", "")
    pid3 = f"{fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR{extra_pid3}"
    segments = [
        f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127081502+0100||OML^O21^OML_O21|{control_id}|P|2.5.1"
        f"|||{accept}|{application}||UNICODE UTF-8",
        f"PID|1||{pid3}||{family}^Kari^Åse|||F",
        "PV1|1|O|HEMPOL^^^STOLAV",
    ]
    for number, (code, system) in enumerate(tests, start=1):
        segments += [
            f"ORC|{control}|{placer}^EPIC||||||||||9144889^Lien^Lise^^^^^^HPR",
            f"OBR|{number}|{placer}^EPIC||{code}^{code}^{system}|||20261127080000+0100",
        ]
    return "\r".join(segments) + "\r"


def adt(*, control_id: str, event: str, pid3: str, family: str = "Nordmann", mrg: str = "") -> str:
    structure = "ADT_A39" if event == "A40" else "ADT_A01"
    segments = [
        f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127081502+0100||ADT^{event}^{structure}|{control_id}"
        "|P|2.5.1||||||UNICODE UTF-8",
        f"EVN|{event}|20261127081500+0100",
        f"PID|1||{pid3}||{family}^Ola|||M",
    ]
    if mrg:
        segments.append(f"MRG|{mrg}")
    return "\r".join(segments) + "\r"


def fnr_cx(fnr: str) -> str:
    return f"{fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR"


async def exchange(
    port: int, messages: list[str], *, ssl: Any = None, acks_each: int = 1
) -> list[str]:
    """Send messages on one connection with our own framing; read `acks_each` ACKs per message."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
    decoder = MllpDecoder()
    answers: list[str] = []
    try:
        for message in messages:
            writer.write(frame(message.encode("utf-8")))
            await writer.drain()
            for _ in range(acks_each):
                while True:
                    block = decoder.next_message()
                    if isinstance(block, bytes):
                        answers.append(block.decode("utf-8"))
                        break
                    chunk = await asyncio.wait_for(reader.read(65536), 20)
                    if not chunk:
                        raise EOFError("listener closed the connection")
                    decoder.receive_data(chunk)
    finally:
        writer.close()
    return answers


def msa(ack: str) -> tuple[str, str]:
    segment = parse_message(ack.encode()).segment("MSA")
    assert segment is not None
    return segment.text(1), segment.text(2)


def err_locations(ack: str) -> list[str]:
    """ERR-2 of every ERR, as `PID^1^3^2`."""
    return [
        segment.field(2).text(1)
        + "".join(f"^{segment.field(2).text(i)}" for i in range(2, 6) if segment.field(2).text(i))
        for segment in parse_message(ack.encode()).segments_named("ERR")
    ]


# --- a record that receives results ---------------------------------------------------------


@dataclass
class Receiver:
    """Answers each message as `behaviour(control_id, try_number)` says:
    `AA`, `AE`, `AR`, `slow` (AA after `slow_seconds`), `cut` (half an ACK, then close)."""

    behaviour: Callable[[str, int], str] = lambda control_id, attempt: "AA"
    slow_seconds: float = 1.0
    received: list[str] = field(default_factory=list)
    filed: list[str] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder()
        try:
            while True:
                chunk = await reader.read(65536)
                decoder.receive_data(chunk)
                while isinstance(block := decoder.next_message(), bytes):
                    message = parse_message(block)
                    control_id = message.control_id
                    self.received.append(control_id)
                    attempt = self.received.count(control_id)
                    action = self.behaviour(control_id, attempt)
                    code = "AA" if action == "slow" else action
                    ack = (
                        f"MSH|^~\\&|EHR|HMN|LAB|STOLAV|20261127100000||ACK^R01^ACK|A{attempt}{control_id}"
                        f"|P|2.5.1\rMSA|{code}|{control_id}\r"
                    ).encode()
                    if action == "slow":
                        await asyncio.sleep(self.slow_seconds)
                    if action == "cut":
                        writer.write(b"\x0b" + ack[:20])
                        await writer.drain()
                        writer.close()
                        return
                    if code == "AA" and control_id not in self.filed:
                        self.filed.append(control_id)  # a record files a message once (MSH-10)
                    writer.write(frame(ack))
                    await writer.drain()
                if not chunk:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()


@pytest.fixture
def tokens(committed_database: TestDatabase) -> dict[str, str]:
    """Tokens of the committed database, where these tests' servers run."""
    return committed_database.tokens
