"""Fixtures of the HL7 socket tests: a committing database, a listener on a real port, and the
messages the record sends (the record's receiving side is testkit.record.FakeRecord).

Socket tests commit from other threads, so they use their own engine on the test database
rather than the rolled-back `db` session, and unique placer numbers, control IDs and patients
so that tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from lab.db import make_engine, make_session_factory
from lab.hl7.codec.er7 import parse_message
from lab.hl7.inbox import Inbox
from lab.hl7.listener import Hl7Listener
from lab.tables import INBOUND, OUTBOUND, Hl7Message, ReportedResult, Withdrawal
from testkit.database import ScratchDatabase
from testkit.mllp import send_hl7
from testkit.orders import oml_o21
from testkit.patients import SyntheticPatient

T = TypeVar("T")
OSLO_WINTER = timezone(timedelta(hours=1))


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
def hl7_engine(committed_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(committed_database.runtime_url, pool_size=10)
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
            session.execute(delete(Withdrawal))
            session.execute(delete(Hl7Message).where(Hl7Message.direction == OUTBOUND))
            session.execute(text("DELETE FROM hl7_pending_release"))
            session.commit()

    clear()
    yield
    clear()


def logged(factory: sessionmaker[Session], control_id: str) -> list[Hl7Message]:
    """The inbound log rows of `control_id`."""
    with factory() as session:
        return list(
            session.scalars(
                select(Hl7Message).where(
                    Hl7Message.direction == INBOUND, Hl7Message.control_id == control_id
                )
            )
        )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


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
    """An OML^O21 of the HL7 tests: Kari Åse, at HEMPOL, sent and collected at fixed times;
    `ack_modes` is MSH-15|MSH-16 (`AL|NE`)."""
    accept, application = ([*ack_modes.split("|"), "", ""])[:2] if ack_modes else ("", "")
    patient = SyntheticPatient(fnr=fnr, family=family, given="Kari", middle="Åse", sex="F")
    return oml_o21(
        control_id=control_id,
        placer=placer,
        patient=patient,
        tests=tests,
        control=control,
        ack_modes=(accept, application),
        extra_pid3=extra_pid3,
        location="HEMPOL",
        sent_at=datetime(2026, 11, 27, 8, 15, 2, tzinfo=OSLO_WINTER),
        collected_at=datetime(2026, 11, 27, 8, 0, tzinfo=OSLO_WINTER),
    ).decode("utf-8")


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
    """Send messages on one connection; read `acks_each` ACKs per message (as text)."""
    answers = await send_hl7(
        "127.0.0.1",
        port,
        [message.encode("utf-8") for message in messages],
        ssl=ssl,
        answers_each=acks_each,
        timeout=20,
    )
    return [answer.decode("utf-8") for answer in answers]


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


@pytest.fixture
def tokens(committed_database: ScratchDatabase) -> dict[str, str]:
    """Tokens of the committed database, where these tests' servers run."""
    return committed_database.tokens
