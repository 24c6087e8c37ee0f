"""The MLLP listener: the only inbound HL7 socket code (asyncio server, optional TLS).

Each connection gets its own `MllpDecoder` (reads split and merge blocks arbitrarily) and is
served in order: a message is stored, its commit ACK sent (enhanced mode), it is processed,
and its application ACK sent, before the next message of that connection is looked at. Many
connections are served at once; the database work runs in worker threads (`Inbox` is
synchronous, SQLAlchemy sessions are).

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
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.hl7.codec.errors import MllpFramingError
from lab.hl7.codec.mllp import DEFAULT_MAX_MESSAGE_SIZE, MllpDecoder, frame
from lab.hl7.inbox import Inbox
from lab.hl7.logsafe import describe_failure
from lab.hl7.senders import Caller, CertificateSubject, SenderPolicy
from lab.peers import LOOPBACK, ConnectionGate, Network
from lab.timeutil import utcnow

log = logging.getLogger(__name__)
READ_SIZE = 65536


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
        reuse_port: bool = False,
    ) -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.tls = tls
        # SO_REUSEPORT: several intake processes listen on one port and the kernel spreads the
        # connections over them (lab/intake.py). The connection caps then hold per process.
        self.reuse_port = reuse_port
        self.senders = senders or SenderPolicy()
        self.limits = limits or ListenerLimits()
        self.gate = ConnectionGate(
            allowed=allowed_peers,
            max_connections=self.limits.max_connections,
            max_per_peer=self.limits.max_connections_per_peer,
        )
        self.stats = ListenerStats()
        self._server: asyncio.Server | None = None

    @property
    def client_certificates(self) -> bool:
        return self.tls is not None and self.tls.verify_mode == ssl.CERT_REQUIRED

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # No `ssl=` here: the handshake is started by hand once the peer has been admitted.
        self._server = await asyncio.start_server(
            self._connection,
            self.host,
            self.port,
            limit=READ_SIZE,
            reuse_port=self.reuse_port or None,
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

    async def stop(self) -> None:
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

    def status(self) -> dict[str, Any]:
        """For /healthz; `address` is removed there for callers who are not signed in."""
        stats = self.stats
        return {
            "state": "up" if self._server is not None else "down",
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
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=max(0.0, wait))
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

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, caller: Caller) -> None:
        stored = await asyncio.to_thread(self.inbox.store, raw, caller=caller)
        self.stats.messages += 1
        self.stats.last_message_at = utcnow()
        if stored.duplicate:
            self.stats.duplicates += 1
        for ack in stored.acks:
            writer.write(frame(ack))
        if stored.acks:
            await writer.drain()
        if stored.pending is not None:
            acks = await asyncio.to_thread(
                self.inbox.process, stored.message_id, stored.pending, caller=caller
            )
            for ack in acks:
                writer.write(frame(ack))
            if acks:
                await writer.drain()
