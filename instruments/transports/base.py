"""A byte channel and the loop that drives one link-layer `Connection` over it.

The driver reads whatever one read returns (a frame may arrive split or merged with the next:
the `Connection` reassembles), hands it to the connection with `time.monotonic()`, ticks the
connection's timers at `next_deadline()`, and writes what the connection wants sent. Every piece
in and out goes to `on_traffic` first (the raw archive), and is fed or written only after that
returned: the archive is durable before the bytes are interpreted or sent.

A peer that streams bytes that never end a frame, or frames that never end a message, would
grow the connection's buffers without limit: past `LineLimits` the line is closed
(`LineOverflow`), the way a framing error closes an MLLP connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from instruments.astm.events import NEED_DATA, PAUSED, Event
from instruments.astm.link import Connection, Role

#: Poll the timers at least this often, so a timer set while a read waits is not missed.
_MAX_WAIT = 0.5


class LineOverflow(Exception):
    """The peer sent more than a frame or a message may hold; the line is closed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineLimits:
    # E1381 frames hold at most 247 bytes; a megabyte without a frame end is not an analyser.
    max_buffered_bytes: int = 1024 * 1024
    # One message is one specimen or one batch; a hundred thousand records is not.
    max_message_records: int = 100_000


class ByteChannel(Protocol):
    """One open line to a peer."""

    @property
    def peer(self) -> str: ...

    async def read(self) -> bytes:
        """What arrived (one read); b"" when the peer closed the line."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


Traffic = Callable[[Role, bytes], Awaitable[None]]
EventHandler = Callable[["LineDriver", Event], Awaitable[None]]


async def _no_archive(_writer: Role, _data: bytes) -> None:
    return None


class LineDriver:
    """Drives `connection` over `channel` until the peer closes or `stop()` is called."""

    def __init__(
        self,
        connection: Connection,
        channel: ByteChannel,
        *,
        on_event: EventHandler,
        on_traffic: Traffic = _no_archive,
        clock: Callable[[], float] = time.monotonic,
        split_writes: Callable[[bytes], list[bytes]] | None = None,
        limits: LineLimits | None = None,
    ) -> None:
        self.limits = limits or LineLimits()
        self.connection = connection
        self.channel = channel
        self.on_event = on_event
        self.on_traffic = on_traffic
        self.clock = clock
        self.split_writes = split_writes
        self.peer_role = Role.INSTRUMENT if connection.role is Role.HOST else Role.HOST
        self._write_lock = asyncio.Lock()
        self._stopping = False
        self.closed = asyncio.Event()

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        connection = self.connection
        read: asyncio.Task[bytes] | None = None
        try:
            while not self._stopping:
                if read is None:
                    read = asyncio.ensure_future(self.channel.read())
                deadline = connection.next_deadline()
                wait = _MAX_WAIT if deadline is None else min(_MAX_WAIT, deadline - self.clock())
                done, _ = await asyncio.wait({read}, timeout=max(0.0, wait))
                if read in done:
                    data = read.result()
                    read = None
                    if not data:
                        break
                    await self.on_traffic(self.peer_role, data)  # durable before it is read
                    connection.receive_data(data, self.clock())
                    self._check_limits()
                else:
                    connection.tick(self.clock())
                await self.process()
        finally:
            if read is not None:
                read.cancel()
            self.closed.set()

    def _check_limits(self) -> None:
        connection, limits = self.connection, self.limits
        if connection.buffered_bytes > limits.max_buffered_bytes:
            raise LineOverflow(f"over {limits.max_buffered_bytes} bytes without a frame end")
        if connection.buffered_records > limits.max_message_records:
            raise LineOverflow(f"over {limits.max_message_records} records in one message")

    async def process(self) -> None:
        """Hand every pending event to the handler, then write what the connection wants sent."""
        while True:
            event = self.connection.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            await self.on_event(self, event)
        await self.flush()

    async def flush(self) -> None:
        async with self._write_lock:
            data = self.connection.data_to_send()
            if not data:
                return
            await self.on_traffic(self.connection.role, data)
            pieces = self.split_writes(data) if self.split_writes else [data]
            for piece in pieces:
                await self.channel.write(piece)

    async def send(self, records: Sequence[bytes]) -> int:
        """Queue a message; the connection bids when the line is neutral."""
        number = self.connection.send_message(records, self.clock())
        await self.process()
        return number
