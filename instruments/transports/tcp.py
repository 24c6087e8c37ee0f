"""ASTM over TCP with asyncio (E1381-02 TCP/IP section: the same framing over a stream).

Server mode: the analyser connects in; each accepted connection gets its own link-layer
`Connection`. A `ConnectionGate` is asked before a byte is read: a peer outside the analyser's
`allowed_peers`, or a second connection while one is open, is closed at once and reported to
`on_refused` (the runner raises an alarm). TCP keepalive is switched on for an admitted
connection, so a line whose analyser vanished without closing (power cut, cable) is found dead
within about two minutes and the analyser's new connection is let in.

Client mode: we connect out and reconnect with exponential backoff. A read returns what the
socket had (frames split and merged arbitrarily); the driver reassembles.
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

_READ_SIZE = 4096

OnLine = Callable[["StreamChannel"], Awaitable[None]]
OnRefused = Callable[[str, Refusal], None]


class StreamChannel:
    """A `ByteChannel` over an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        address = writer.get_extra_info("peername")
        self._peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

    @property
    def peer(self) -> str:
        return self._peer

    async def read(self) -> bytes:
        try:
            return await self.reader.read(_READ_SIZE)
        except (ConnectionError, OSError):
            return b""  # reset by the peer: the line is gone

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def open_channel(host: str, port: int, *, timeout: float = 10.0) -> StreamChannel:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    return StreamChannel(reader, writer)


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

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        host = str(address[0]) if isinstance(address, tuple) else ""
        refusal = gate.admit(host)
        if refusal is not None:
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else host
            log.warning("analyser port %s: refused %s: %s", settings.port, peer, refusal.reason)
            writer.transport.abort()  # nothing read, nothing archived
            if on_refused is not None:
                on_refused(peer, refusal)
            return
        _keep_alive(writer)
        channel = StreamChannel(reader, writer)
        try:
            await on_line(channel)
        except Exception:  # one line's failure must not reach the server or other lines
            log.exception("analyser line from %s failed", channel.peer)
        finally:
            gate.release(host)
            await channel.close()

    return await asyncio.start_server(accepted, settings.host, settings.port)


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """Probe an idle connection after 60 s, every 15 s, and give up after 4 unanswered probes."""
    sock = writer.get_extra_info("socket")
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
