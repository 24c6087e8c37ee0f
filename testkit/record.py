"""The record's receiving side: a fake shared record that takes our ORU^R01 over MLLP.

Each message is answered as `behaviour(control_id, attempt)` says (`attempt` counts the tries
of that MSH-10, from 1):

- `AA`: accepted and filed (a record files a message once per MSH-10: delivery is at least once);
- `AE`: an application error (ERR: unknown patient), the sender should try again later;
- `AR`: rejected (ERR: unsupported message type), the sender must not send it again;
- `slow`: AA after `slow_seconds` (longer than the sender waits: its try times out);
- `cut`: half an ACK, then the connection is closed;
- `down`: the connection is closed at once, nothing answered (a record that is away).

`stop()` and `start(port)` take the record off the network and back on the same port (connection
refused in between). Every ACK is built by the lab module's own ACK builder
(`lab.hl7.codec.ack`), as any HL7 v2.5.1 application answers: MSA-2 echoes MSH-10, sender and
receiver swapped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from lab.hl7.codec.ack import AckCode, build_ack
from lab.hl7.codec.er7 import Message, parse_message
from lab.hl7.codec.errors import ErrorCode, Problem
from lab.hl7.codec.mllp import MllpDecoder, frame

Action = Literal["AA", "AE", "AR", "slow", "cut", "down"]
Behaviour = Callable[[str, int], Action]
Say = Callable[[str], None]

_ANSWERS = {
    "AA": (AckCode.APPLICATION_ACCEPT, ()),
    "AE": (
        AckCode.APPLICATION_ERROR,
        (
            Problem(
                segment_id="PID",
                field_position=3,
                code=ErrorCode.UNKNOWN_KEY_IDENTIFIER,
                message="the record does not know this patient",
            ),
        ),
    ),
    "AR": (
        AckCode.APPLICATION_REJECT,
        (
            Problem(
                segment_id="MSH",
                field_position=9,
                code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
                message="the record takes no messages of this kind",
            ),
        ),
    ),
}


def accept_all(control_id: str, attempt: int) -> Action:
    return "AA"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedResult:
    """One ORU^R01 as the record got it."""

    control_id: str
    patient: str  # PID-3.1
    placer: str  # ORC-2.1
    observations: tuple[tuple[str, str, str, str], ...]  # (local code, value, unit, OBX-11)
    received_at: float  # time.time()

    @classmethod
    def read(cls, message: Message) -> ReceivedResult:
        orc, pid = message.segment("ORC"), message.segment("PID")
        return cls(
            control_id=message.control_id,
            patient=pid.field(3).text(1) if pid is not None else "",
            placer=orc.field(2).text(1) if orc is not None else "",
            observations=tuple(
                (obx.field(3).text(4), obx.text(5), obx.field(6).text(1), obx.text(11))
                for obx in message.segments_named("OBX")
            ),
            received_at=time.time(),
        )


class FakeRecord:
    """An MLLP server on 127.0.0.1 that plays the shared record.

    `received` keeps every try, `filed` the first accepted copy of each MSH-10 (in the order
    filed), `by_placer` the first filed ORU of each order. With `log_path` or `say`, each filed
    result is written as one line (the demo day shows them). With `keep=False` it only counts
    (`count`): a benchmark's backlog of 100,000 ORUs would otherwise measure the record's memory
    and parsing; every message is then a first try.
    """

    def __init__(
        self,
        behaviour: Behaviour = accept_all,
        *,
        slow_seconds: float = 1.0,
        log_path: Path | None = None,
        say: Say | None = None,
        keep: bool = True,
    ) -> None:
        self.behaviour = behaviour
        self.slow_seconds = slow_seconds
        self.log_path = log_path
        self.say = say
        self.keep = keep
        self.count = 0
        self.received: list[ReceivedResult] = []
        self.filed: dict[str, ReceivedResult] = {}
        self.by_placer: dict[str, ReceivedResult] = {}
        self.port = 0
        self._tries: dict[str, int] = {}
        self._server: asyncio.Server | None = None

    @property
    def received_ids(self) -> list[str]:
        """MSH-10 of every message received, tries included, in order of arrival."""
        return [message.control_id for message in self.received]

    @property
    def filed_ids(self) -> list[str]:
        """MSH-10 of every message filed, each once, in the order filed."""
        return list(self.filed)

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder()
        try:
            while True:
                chunk = await reader.read(65536)
                decoder.receive_data(chunk)
                while isinstance(block := decoder.next_message(), bytes):
                    if not await self._answer(parse_message(block), writer):
                        return
                if not chunk:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _answer(self, message: Message, writer: asyncio.StreamWriter) -> bool:
        """Answer one message as the behaviour says; False when the connection is to close."""
        self.count += 1
        if not self.keep:
            writer.write(frame(self._ack(message, "AA")))
            await writer.drain()
            return True
        received = ReceivedResult.read(message)
        self.received.append(received)
        attempt = self._tries[received.control_id] = self._tries.get(received.control_id, 0) + 1
        action = self.behaviour(received.control_id, attempt)
        if action == "down":
            return False
        ack = self._ack(message, "AA" if action in ("slow", "cut") else action)
        if action == "slow":
            await asyncio.sleep(self.slow_seconds)
        if action == "cut":
            writer.write(frame(ack)[: len(ack) // 2])
            await writer.drain()
            return False
        if action in ("AA", "slow") and received.control_id not in self.filed:
            self.filed[received.control_id] = received
            self.by_placer.setdefault(received.placer, received)
            self._log(received)
        writer.write(frame(ack))
        await writer.drain()
        return True

    def _ack(self, message: Message, answer: str) -> bytes:
        code, problems = _ANSWERS[answer]
        return build_ack(
            message,
            code=code,
            control_id=f"R{self.count}",
            now=datetime.now(UTC),
            problems=problems,
        ).encode()

    def _log(self, received: ReceivedResult) -> None:
        if self.say is None and self.log_path is None:
            return
        values = ", ".join(
            f"{code} {value} {unit}".strip() + ("" if status == "F" else f" ({status})")
            for code, value, unit, status in received.observations
        )
        line = (
            f"{datetime.now(UTC):%H:%M:%S} record got {received.control_id}: order "
            f"{received.placer}, patient {received.patient}: {values}"
        )
        if self.say is not None:
            self.say(line)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
