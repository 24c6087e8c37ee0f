"""ASTM over TCP with asyncio (E1381-02 TCP/IP section: the same framing over a stream).

Server mode: the analyser connects in; each accepted connection gets its own link-layer
`Connection`. A `ConnectionGate` is asked before a byte is read: a peer outside the analyser's
`allowed_peers`, or a second connection while one is open, is closed at once and reported to
`on_refused` (the runner raises an alarm). TCP keepalive is switched on for an admitted
connection, so a line whose analyser vanished without closing (power cut, cable) is found dead
within about two minutes and the analyser's new connection is let in.

Client mode: we connect out and reconnect with exponential backoff. A read returns what the
socket had (frames split and merged arbitrarily); the driver reassembles.

The channel is an asyncio protocol (`TcpChannel`), not a stream reader and writer: see there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable

from instruments.config import TcpSettings
from lab.peers import ConnectionGate, Refusal

log = logging.getLogger(__name__)

#: Past this many bytes received and not yet read, the socket is not read until they are.
_HIGH_WATER = 64 * 1024

OnLine = Callable[["TcpChannel"], Awaitable[None]]
OnRefused = Callable[[str, Refusal], None]


class TcpChannel(asyncio.Protocol):
    """A `ByteChannel` over one TCP connection: the asyncio protocol itself, without a stream
    reader and writer in between.

    An analyser's message is a dozen round trips of a few bytes, each a read and a write on
    both ends, so what a read and a write cost the event loop is most of what a line costs.
    Bytes that arrive wait in the channel until `read` takes them all; a read that is
    cancelled (the driver's `stop`) takes none, so nothing that arrived is lost. `on_made`, if
    given, is called once the connection is made (the server's gate, see `serve`)."""

    def __init__(self, on_made: Callable[[TcpChannel], None] | None = None) -> None:
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        self._peer = ""
        self._received: list[bytes] = []
        self._received_bytes = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None  # a read waiting for bytes
        self._writable: asyncio.Future[None] | None = None  # a write waiting for room
        self._writing_paused = False
        self._ended = False  # the peer closed (EOF) or the connection is lost
        self._lost: asyncio.Future[None] | None = None
        # The loop, looked up once: asyncio.get_running_loop() makes a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        loop = self._loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        address = transport.get_extra_info("peername")
        self._peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._received_bytes += len(data)
        if self._received_bytes > _HIGH_WATER and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake_reader()
        return True  # the peer sends no more; what we still write goes out until we close

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake_reader()
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        writable = self._writable
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------------- ByteChannel

    @property
    def peer(self) -> str:
        return self._peer

    async def read(self) -> bytes:
        """What arrived since the last read; b"" once the peer closed or the line is gone."""
        if not self._received:
            if self._ended:
                return b""
            assert self._loop is not None  # connected
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not self._received:
                return b""  # ended (a reset by the peer too: the line is gone)
        received = self._received
        data = received[0] if len(received) == 1 else b"".join(received)
        received.clear()
        self._received_bytes = 0
        if self._reading_paused and self.transport is not None and not self._ended:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """Hand `data` to the socket; waits only while the peer does not take what we send.
        Raises `ConnectionResetError` once the connection is lost."""
        transport, lost = self.transport, self._lost
        if transport is None or lost is None or lost.done():
            raise ConnectionResetError("Connection lost")
        transport.write(data)
        while self._writing_paused and not lost.done():
            assert self._loop is not None  # connected
            writable = self._writable = self._loop.create_future()
            try:
                await writable
            finally:
                self._writable = None
        if lost.done():
            raise ConnectionResetError("Connection lost")

    async def close(self) -> None:
        """Close the connection (what is written still goes out first) and wait until it is."""
        if self.transport is None or self._lost is None:
            return
        self.transport.close()
        await self._lost


async def open_channel(host: str, port: int, *, timeout: float = 10.0) -> TcpChannel:
    loop = asyncio.get_running_loop()
    _transport, channel = await asyncio.wait_for(
        loop.create_connection(TcpChannel, host, port), timeout
    )
    return channel


async def accept_one(host: str, port: int) -> TcpChannel:
    """Listen on `host:port` until one peer connects; that connection (later ones are closed)."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[TcpChannel] = loop.create_future()

    def made(channel: TcpChannel) -> None:
        if arrived.done():
            assert channel.transport is not None
            channel.transport.close()
        else:
            arrived.set_result(channel)

    server = await loop.create_server(lambda: TcpChannel(made), host, port)
    try:
        return await arrived
    finally:
        server.close()


async def serve(
    settings: TcpSettings,
    on_line: OnLine,
    *,
    gate: ConnectionGate | None = None,
    on_refused: OnRefused | None = None,
) -> asyncio.Server:
    """Listen on `settings.host:port`; run `on_line` for every analyser connection `gate` admits
    (by default: from `settings.allowed_peers`, one at a time)."""
    if gate is None:
        gate = ConnectionGate(allowed=settings.allowed_peers, max_connections=1, max_per_peer=1)
    lines: set[asyncio.Task[None]] = set()  # the running lines (a task needs a strong reference)

    async def run(channel: TcpChannel, host: str) -> None:
        try:
            await on_line(channel)
        except Exception:  # one line's failure must not reach the server or other lines
            log.exception("analyser line from %s failed", channel.peer)
        finally:
            gate.release(host)
            await channel.close()

    def made(channel: TcpChannel) -> None:
        transport = channel.transport
        assert transport is not None
        address = transport.get_extra_info("peername")
        host = str(address[0]) if isinstance(address, tuple) else ""
        refusal = gate.admit(host)
        if refusal is not None:
            peer = channel.peer if isinstance(address, tuple) else host
            log.warning("analyser port %s: refused %s: %s", settings.port, peer, refusal.reason)
            transport.abort()  # nothing read, nothing archived
            if on_refused is not None:
                on_refused(peer, refusal)
            return
        _keep_alive(transport)
        task = asyncio.get_running_loop().create_task(run(channel, host))
        lines.add(task)
        task.add_done_callback(lines.discard)

    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: TcpChannel(made), settings.host, settings.port)


def _keep_alive(transport: asyncio.BaseTransport) -> None:
    """Probe an idle connection after 60 s, every 15 s, and give up after 4 unanswered probes."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


async def connect_forever(
    settings: TcpSettings,
    on_line: OnLine,
    *,
    on_wait: Callable[[float, str], None] | None = None,
) -> None:
    """Client mode: connect, run the line until it drops, wait, connect again; until cancelled.

    The wait doubles after every failed attempt, from `reconnect_initial` to `reconnect_max`
    seconds, with some jitter so many analysers do not reconnect in step after an outage.
    """
    delay = settings.reconnect_initial
    while True:
        try:
            channel = await open_channel(settings.host, settings.port)
        except (OSError, TimeoutError) as error:
            reason = f"cannot connect to {settings.host}:{settings.port}: {error}"
        else:
            delay = settings.reconnect_initial
            try:
                await on_line(channel)
                reason = "the analyser closed the connection"
            except Exception as error:
                log.exception("analyser line to %s failed", channel.peer)
                reason = f"line failed: {error}"
            finally:
                await channel.close()
        wait = delay * random.uniform(0.8, 1.2)
        if on_wait is not None:
            on_wait(wait, reason)
        await asyncio.sleep(wait)
        delay = min(settings.reconnect_max, delay * 2)
