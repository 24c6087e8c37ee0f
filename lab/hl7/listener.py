"""The MLLP listener: the only inbound HL7 socket code (asyncio server, optional TLS).

Each connection gets its own `MllpDecoder` (reads split and merge blocks arbitrarily) and is
served in order: a message is stored, its commit ACK sent (enhanced mode), it is processed,
and its application ACK sent, before the next message of that connection is looked at. Many
connections are served at once; the database work runs in the listener's own worker threads
(`Inbox` is synchronous, SQLAlchemy sessions are), so the background jobs that share the
event loop's default threads (release, indexer, dispatcher) never hold a message back.

Nothing is acknowledged before it is committed (docs/architecture.md, rule 3). When the database
fails, the connection is closed without an ACK so the sender resends. A framing error that
leaves the stream unusable (an endless block) closes the connection too.

Who may speak (docs/security.md): a new connection is first checked against the allowed peer
networks (`LAB_MLLP_ALLOWED_PEERS`, loopback by default) and the connection caps, before a byte
is read from it, TLS handshake included; a refused one is closed and logged. With TLS the
handshake runs only after that check (plain accept, then `start_tls`), and with a CA file the
client must present a certificate it signed; its subject says which senders (MSH-3/MSH-4) the
connection may name (`lab.hl7.senders`). A connection that sends nothing for `idle_timeout`
seconds, or does not finish a message within `message_timeout` seconds of its first byte, is
closed: a slow peer cannot hold a connection and its buffer for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from lab.hl7.codec.errors import MllpFramingError
from lab.hl7.codec.mllp import DEFAULT_MAX_MESSAGE_SIZE, MllpDecoder, frame
from lab.hl7.inbox import Inbox
from lab.hl7.logsafe import describe_failure
from lab.hl7.senders import Caller, CertificateSubject, SenderPolicy
from lab.peers import LOOPBACK, ConnectionGate, Network
from lab.timeutil import utcnow

log = logging.getLogger(__name__)
READ_SIZE = 65536
_T = TypeVar("_T")


def server_tls_context(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS for MLLP, which has no security of its own (docs/hl7-interface.md).

    With `client_ca` the client must present a certificate signed by that CA (mutual TLS).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerLimits:
    """Caps and deadlines that hold before anyone is known (docs/security.md has the defaults)."""

    max_connections: int = 128
    max_connections_per_peer: int = 32
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout: float = 600.0
    message_timeout: float = 60.0
    handshake_timeout: float = 10.0


@dataclass(slots=True)
class ListenerStats:
    connections_open: int = 0
    connections_total: int = 0
    refused_peers: int = 0
    refused_over_cap: int = 0
    messages: int = 0
    duplicates: int = 0
    framing_errors: int = 0
    timeouts: int = 0
    last_message_at: datetime | None = None
    last_refused_at: datetime | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


_SLOT = struct.Struct("qq")  # one intake process: its pid, its open connections


def bind_shared(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """The MLLP listening socket that worker 0 makes and hands to its intake children."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    listening = socket.socket(info[0], socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(info[4])
    listening.listen(backlog)
    listening.setblocking(False)
    return listening


class AcceptSpread:
    """Several intake processes on one listening socket (lab/intake.py), each taking a new
    connection only while no live process holds fewer: the record's connections are spread
    evenly over the processes, which SO_REUSEPORT's hash of the addresses did not do (4
    connections over 2 processes all went to one in 2 tries of 6).

    The open connections of each process are counted in a small file that every process maps
    (`path`: one slot of pid and count per process, made empty by worker 0). A process that is
    not alive does not count. A connection stays in the process that accepted it, so its
    messages are still handled in order, each acknowledged after its commit.
    """

    def __init__(self, listening: socket.socket, path: Path, *, index: int, count: int) -> None:
        self.socket = listening
        self.index = index
        self.count = count
        self.path = path
        descriptor = os.open(path, os.O_RDWR)
        try:
            self._slots = mmap.mmap(descriptor, _SLOT.size * count)
        finally:
            os.close(descriptor)
        self.open = 0
        self._write()

    @staticmethod
    def make_file(path: Path, count: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(_SLOT.size * count))

    def _write(self) -> None:
        _SLOT.pack_into(self._slots, _SLOT.size * self.index, os.getpid(), self.open)

    def may_accept(self) -> bool:
        for index in range(self.count):
            if index == self.index:
                continue
            pid, held = _SLOT.unpack_from(self._slots, _SLOT.size * index)
            if held < self.open and pid > 0 and _alive(pid):
                return False
        return True

    def opened(self) -> None:
        self.open += 1
        self._write()

    def closed(self) -> None:
        self.open -= 1
        self._write()

    def close(self) -> None:
        self._slots.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Hl7Listener:
    """Serves MLLP on host:port; `start()` binds, `stop()` closes every connection."""

    def __init__(
        self,
        inbox: Inbox,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        allowed_peers: tuple[Network, ...] = LOOPBACK,
        senders: SenderPolicy | None = None,
        limits: ListenerLimits | None = None,
        spread: AcceptSpread | None = None,
    ) -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.tls = tls
        # Several intake processes on one port (lab/intake.py): the connection caps then hold
        # per process.
        self.spread = spread
        self._accepting: asyncio.Task[None] | None = None
        self.senders = senders or SenderPolicy()
        self.limits = limits or ListenerLimits()
        self.gate = ConnectionGate(
            allowed=allowed_peers,
            max_connections=self.limits.max_connections,
            max_per_peer=self.limits.max_connections_per_peer,
        )
        self.stats = ListenerStats()
        self._server: asyncio.Server | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def client_certificates(self) -> bool:
        return self.tls is not None and self.tls.verify_mode == ssl.CERT_REQUIRED

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when started with port 0)."""
        if self.spread is not None:
            return int(self.spread.socket.getsockname()[1])
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        return self._server is not None or self._accepting is not None

    async def start(self) -> None:
        # As many threads as the event loop's default pool would have, for this listener only.
        self._executor = ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="hl7-intake"
        )
        if self.spread is not None:
            self._accepting = asyncio.create_task(self._accept_spread(self.spread))
        else:
            # No `ssl=` here: the handshake is started by hand once the peer has been admitted.
            self._server = await asyncio.start_server(
                self._connection, self.host, self.port, limit=READ_SIZE
            )
        log.info(
            "hl7 listener on %s:%s%s, peers %s",
            self.host,
            self.bound_port,
            " (TLS, client certificates)"
            if self.client_certificates
            else " (TLS)"
            if self.tls
            else "",
            ", ".join(str(network) for network in self.gate.allowed),
        )

    async def _accept_spread(self, spread: AcceptSpread) -> None:
        """One connection at a time from the shared socket, while this process's turn."""
        loop = asyncio.get_running_loop()
        while True:
            while not spread.may_accept():
                await asyncio.sleep(0.02)
            try:
                accepted, _address = await loop.sock_accept(spread.socket)
            except OSError as error:  # out of descriptors, for one: wait, do not spin
                log.warning("hl7 listener: accept failed: %s", error)
                await asyncio.sleep(0.5)
                continue
            spread.opened()
            task = loop.create_task(self._serve_accepted(accepted, spread))
            self.stats.tasks.add(task)
            task.add_done_callback(self.stats.tasks.discard)

    async def _serve_accepted(self, accepted: socket.socket, spread: AcceptSpread) -> None:
        try:
            try:
                reader, writer = await asyncio.open_connection(sock=accepted, limit=READ_SIZE)
            except BaseException:
                accepted.close()
                raise
            await self._connection(reader, writer)
        except OSError as error:
            log.info("hl7 listener: a new connection went away: %s", error)
        finally:
            spread.closed()

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._server is not None:
            self._server.close()
        for task in list(self.stats.tasks):
            task.cancel()
        if self.stats.tasks:
            await asyncio.gather(*self.stats.tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def status(self) -> dict[str, Any]:
        """For /healthz; `address` is removed there for callers who are not signed in."""
        stats = self.stats
        return {
            "state": "up" if self.listening else "down",
            "address": f"{self.host}:{self.bound_port}",
            "tls": self.tls is not None,
            "client_certificates": self.client_certificates,
            "connections": stats.connections_open,
            "refused": stats.refused_peers + stats.refused_over_cap,
            "messages": stats.messages,
            "duplicates": stats.duplicates,
            "last_message_at": stats.last_message_at.isoformat() if stats.last_message_at else None,
        }

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        host = str(peername[0]) if isinstance(peername, tuple) else ""
        address = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else ""
        refusal = self.gate.admit(host)
        if refusal is not None:
            # Nothing has been read: close at once, and say so (the contract asks for the log).
            if refusal.over_cap:
                self.stats.refused_over_cap += 1
            else:
                self.stats.refused_peers += 1
            self.stats.last_refused_at = utcnow()
            log.warning("hl7 listener: refused connection from %s: %s", address, refusal.reason)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self.stats.tasks.add(task)
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        caller = Caller(address=address)
        try:
            if self.tls is not None:
                await writer.start_tls(
                    self.tls, ssl_handshake_timeout=self.limits.handshake_timeout
                )
                if self.client_certificates:
                    subject = CertificateSubject.from_peercert(writer.get_extra_info("peercert"))
                    caller = self.senders.caller(address, subject)
            await self._serve(reader, writer, caller)
        except MllpFramingError as exc:
            self.stats.framing_errors += 1
            log.warning("hl7 listener: closing %s: %s", caller.describe(), exc)
        except TimeoutError as exc:
            self.stats.timeouts += 1
            log.info("hl7 listener: closing %s: %s", caller.describe(), exc or "timed out")
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("hl7 listener: %s went away: %s", caller.describe(), exc)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            # The database or a bug: the message stays unanswered; the sender will resend.
            # Logged without the exception's text, which may repeat the message's values.
            log.error(
                "hl7 listener: connection from %s dropped without ACK: %s",
                address,
                describe_failure(exc),
            )
        finally:
            self.gate.release(host)
            self.stats.connections_open -= 1
            if task is not None:
                self.stats.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, caller: Caller
    ) -> None:
        limits = self.limits
        decoder = MllpDecoder(max_message_size=limits.max_message_size)
        message_started: float | None = None  # monotonic time of the first byte of a message
        while True:
            wait = limits.idle_timeout
            if message_started is not None:
                wait = min(wait, message_started + limits.message_timeout - time.monotonic())
            try:
                # A deadline around the read rather than `wait_for`, which makes a task of it.
                async with asyncio.timeout(max(0.0, wait)):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                if message_started is None:
                    raise TimeoutError(f"idle for {limits.idle_timeout:g} s") from None
                raise TimeoutError(
                    f"message not complete within {limits.message_timeout:g} s"
                ) from None
            decoder.receive_data(data)
            while True:
                message = decoder.next_message()
                if not isinstance(message, bytes):
                    break  # NEED_DATA, or CLOSED after the last complete message
                await self._answer(message, writer, caller)
                message_started = None
            if not data:
                return
            if decoder.pending_bytes and message_started is None:
                message_started = time.monotonic()
            elif not decoder.pending_bytes:
                message_started = None

    async def _in_thread(self, work: Callable[[], _T]) -> _T:
        """Run `work` in one of the listener's threads (the database work of a message)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, caller: Caller) -> None:
        stored = await self._in_thread(partial(self.inbox.store, raw, caller=caller))
        self.stats.messages += 1
        self.stats.last_message_at = utcnow()
        if stored.duplicate:
            self.stats.duplicates += 1
        for ack in stored.acks:
            writer.write(frame(ack))
        if stored.acks:
            await writer.drain()
        if stored.pending is not None:
            acks = await self._in_thread(
                partial(self.inbox.process, stored.message_id, stored.pending, caller=caller)
            )
            for ack in acks:
                writer.write(frame(ack))
            if acks:
                await writer.drain()
