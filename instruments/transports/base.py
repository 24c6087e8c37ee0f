"""A byte channel and the loop that drives one link-layer `Connection` over it.

The driver reads whatever one read returns (a frame may arrive split or merged with the next:
the `Connection` reassembles), hands it to the connection with `time.monotonic()`, ticks the
connection's timers at `next_deadline()`, and writes what the connection wants sent. Every piece
in and out goes to `on_traffic` first (the raw archive), and is fed or written only after that
returned: the archive is durable before the bytes are interpreted or sent.

One read is awaited directly, with no task and no timeout of its own around it: an analyser's
message is a dozen round trips (ENQ, each frame, EOT, each answered), so what each costs the event
loop counts twice per message on both ends. The connection's timers are kept by one timer
handle on the loop instead, armed after every step for the connection's next deadline (at most
`_MAX_WAIT` ahead, so a clock that is not the loop's is still looked at often enough), which
ticks the connection and processes what it produced. `stop()` ends a waiting read at once.

A peer that streams bytes that never end a frame, or frames that never end a message, would
grow the connection's buffers without limit: past `LineLimits` the line is closed
(`LineOverflow`), the way a framing error closes an MLLP connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
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


#: Keeps a piece of traffic (the raw archive); synchronous, so that when it returns the piece is
#: kept and nothing else ran meanwhile. It may raise to end the line (a full archive).
Traffic = Callable[[Role, bytes], None]
EventHandler = Callable[["LineDriver", Event], Awaitable[None]]


def _no_archive(_writer: Role, _data: bytes) -> None:
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
        self._unwritten: deque[bytes] = deque()  # kept, not yet written (see `flush`)
        self._writing = False  # a flush is writing `_unwritten`
        self._stopping = False
        self.closed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None  # the task in `run`
        self._reading = False  # `run` waits for the channel's next read
        self._timer: asyncio.TimerHandle | None = None  # the wake-up for the next deadline
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the line runs on
        self._ticking: asyncio.Task[None] | None = None
        self._failure: Exception | None = None  # raised by a wake-up: ends `run`
        self._interrupted = False  # `run`'s read was cancelled by `stop` or a failed wake-up

    def stop(self) -> None:
        self._stopping = True
        self._interrupt()

    def _interrupt(self) -> None:
        """End a read `run` waits on (a read waiting for bytes holds none: nothing is lost)."""
        if self._reading and self._runner is not None and not self._interrupted:
            self._interrupted = True
            self._runner.cancel()

    async def run(self) -> None:
        connection = self.connection
        self._runner = asyncio.current_task()
        try:
            self._arm()
            while not self._stopping:
                self._reading = True
                try:
                    data = await self.channel.read()
                finally:
                    self._reading = False
                if not data:
                    break
                self.on_traffic(self.peer_role, data)  # kept before it is read
                connection.receive_data(data, self.clock())
                self._check_limits()
                await self.process()
                if self._failure is not None:
                    raise self._failure
        except asyncio.CancelledError:
            if not self._interrupted:
                raise  # cancelled from outside
            if self._runner is not None:
                self._runner.uncancel()
            if self._failure is not None:
                raise self._failure from None
            # stopped: the line simply ends
        finally:
            self._reading = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.closed.set()

    def _arm(self) -> None:
        """Make sure the loop wakes the connection by its next deadline."""
        deadline = self.connection.next_deadline()
        if deadline is None or self._stopping or self.closed.is_set():
            return
        loop = self._loop
        if loop is None:  # looked up once: asyncio.get_running_loop() makes a getpid() call
            loop = self._loop = asyncio.get_running_loop()
        when = loop.time() + min(_MAX_WAIT, max(0.0, deadline - self.clock()))
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return  # an earlier wake-up is set; it arms the next one
            timer.cancel()
        self._timer = loop.call_at(when, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._ticking is None or self._ticking.done():
            loop = self._loop or asyncio.get_running_loop()
            self._ticking = loop.create_task(self._tick())

    async def _tick(self) -> None:
        try:
            self.connection.tick(self.clock())
            await self.process()
        except Exception as error:  # the line's failure, as if the reading loop had met it
            self._failure = error
            self._interrupt()

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
        self._arm()

    async def flush(self) -> None:
        """Keep what the connection wants sent, then write it. Pieces reach the line in the
        order the connection produced them: a flush that finds another one writing (waiting for
        the peer to take its bytes, or a serial write) leaves its piece to that one, in turn."""
        data = self.connection.data_to_send()
        if not data:
            return
        self.on_traffic(self.connection.role, data)  # kept before it is written
        unwritten = self._unwritten
        unwritten.append(data)
        if self._writing:
            return
        self._writing = True
        try:
            while unwritten:
                data = unwritten.popleft()
                if self.split_writes is None:
                    await self.channel.write(data)
                else:
                    for piece in self.split_writes(data):
                        await self.channel.write(piece)
        finally:
            self._writing = False

    async def send(self, records: Sequence[bytes]) -> int:
        """Queue a message; the connection bids when the line is neutral."""
        number = self.connection.send_message(records, self.clock())
        await self.process()
        return number
