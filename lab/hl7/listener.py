"""The MLLP listener: the only inbound HL7 socket code (asyncio server, optional TLS).

Each connection gets its own `MllpDecoder` (reads split and merge blocks arbitrarily) and is
served in order: a message is stored, its commit ACK sent (enhanced mode), it is processed,
and its application ACK sent, before the next message of that connection is looked at. Many
connections are served at once; the database work runs in worker threads (`Inbox` is
synchronous, SQLAlchemy sessions are).

Nothing is acknowledged before it is committed (docs/architecture.md, rule 3). When the database
fails, the connection is closed without an ACK so the sender resends. A framing error that
leaves the stream unusable (an endless block) closes the connection too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.hl7.codec.errors import MllpFramingError
from lab.hl7.codec.mllp import DEFAULT_MAX_MESSAGE_SIZE, MllpDecoder, frame
from lab.hl7.inbox import Inbox
from lab.timeutil import utcnow

log = logging.getLogger(__name__)
READ_SIZE = 65536


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS for MLLP, which has no security of its own (docs/install.md, "TLS for MLLP")."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


@dataclass(slots=True)
class ListenerStats:
    connections_open: int = 0
    connections_total: int = 0
    messages: int = 0
    duplicates: int = 0
    framing_errors: int = 0
    last_message_at: datetime | None = None
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
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        idle_timeout: float = 600.0,
        reuse_port: bool = False,
    ) -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.tls = tls
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        # SO_REUSEPORT: several intake processes listen on one port and the kernel spreads the
        # connections over them (lab/intake.py).
        self.reuse_port = reuse_port
        self.stats = ListenerStats()
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection,
            self.host,
            self.port,
            ssl=self.tls,
            limit=READ_SIZE,
            reuse_port=self.reuse_port or None,
        )
        log.info(
            "hl7 listener on %s:%s%s", self.host, self.bound_port, " (TLS)" if self.tls else ""
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
        stats = self.stats
        return {
            "state": "up" if self._server is not None else "down",
            "address": f"{self.host}:{self.bound_port}",
            "tls": self.tls is not None,
            "connections": stats.connections_open,
            "messages": stats.messages,
            "duplicates": stats.duplicates,
            "last_message_at": stats.last_message_at.isoformat() if stats.last_message_at else None,
        }

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.stats.tasks.add(task)
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else ""
        decoder = MllpDecoder(max_message_size=self.max_message_size)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=self.idle_timeout)
                decoder.receive_data(data)
                while True:
                    message = decoder.next_message()
                    if not isinstance(message, bytes):
                        break  # NEED_DATA, or CLOSED after the last complete message
                    await self._answer(message, writer, peer)
                if not data:
                    return
        except MllpFramingError as exc:
            self.stats.framing_errors += 1
            log.warning("hl7 listener: closing %s: %s", peer, exc)
        except TimeoutError:
            log.info("hl7 listener: %s idle, closing", peer)
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("hl7 listener: %s went away: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            # The database or a bug: the message stays unanswered; the sender will resend.
            log.exception("hl7 listener: connection from %s dropped without ACK", peer)
        finally:
            self.stats.connections_open -= 1
            if task is not None:
                self.stats.tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, peer: str) -> None:
        stored = await asyncio.to_thread(self.inbox.store, raw, peer=peer)
        self.stats.messages += 1
        self.stats.last_message_at = utcnow()
        if stored.duplicate:
            self.stats.duplicates += 1
        for ack in stored.acks:
            writer.write(frame(ack))
        if stored.acks:
            await writer.drain()
        if stored.pending is not None:
            acks = await asyncio.to_thread(self.inbox.process, stored.message_id, stored.pending)
            for ack in acks:
                writer.write(frame(ack))
            if acks:
                await writer.drain()
