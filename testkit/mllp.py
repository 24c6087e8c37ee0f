"""The record's sending side: MLLP connections to the lab module's listener.

Each answer is read whole (MLLP framing by the lab module's own decoder) before the next message
goes, however the bytes arrive: one `read()` is never taken for one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections.abc import Sequence

from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.mllp import MllpDecoder, frame


class ClosedBeforeAnswer(ConnectionError):
    """The listener closed the connection before a whole answer came."""


def ack_code(ack: bytes) -> str:
    """MSA-1 of an acknowledgement (AA, AE, AR, CA ...); empty when it has no MSA."""
    msa = parse_message(ack).segment("MSA")
    return msa.text(1) if msa is not None else ""


class MllpConnection:
    """One connection to an MLLP listener."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = MllpDecoder()

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> MllpConnection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl), timeout
        )
        return cls(reader, writer)

    async def send(self, message: bytes) -> None:
        self._writer.write(frame(message))
        await self._writer.drain()

    async def answer(self, *, timeout: float = 30.0) -> bytes:
        """The next whole block from the listener; ClosedBeforeAnswer when it closes first."""
        while not isinstance(block := self._decoder.next_message(), bytes):
            chunk = await asyncio.wait_for(self._reader.read(65536), timeout)
            if not chunk:
                raise ClosedBeforeAnswer("the peer closed the connection before the ACK")
            self._decoder.receive_data(chunk)
        return block

    async def exchange(self, message: bytes, *, timeout: float = 30.0) -> bytes:
        """Send one message and read its acknowledgement."""
        await self.send(message)
        return await self.answer(timeout=timeout)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def send_hl7(
    host: str,
    port: int,
    messages: Sequence[bytes],
    *,
    timeout: float = 30.0,
    ssl: _ssl.SSLContext | None = None,
    answers_each: int = 1,
) -> list[bytes]:
    """Send messages on one connection; `answers_each` answers of each (enhanced mode: the
    commit ACK, then the application ACK), read whole before the next message."""
    connection = await MllpConnection.open(host, port, ssl=ssl, timeout=timeout)
    answers: list[bytes] = []
    try:
        for message in messages:
            await connection.send(message)
            for _ in range(answers_each):
                answers.append(await connection.answer(timeout=timeout))
    finally:
        await connection.close()
    return answers
