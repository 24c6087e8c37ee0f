"""Joins a profile, a transport and the lab's services: one `InstrumentRunner` per analyser.

Each line (a TCP connection or an open serial port) gets its own link-layer `Connection` in the
host role and a `LineDriver`. A completed message is handled in one database transaction in a
worker thread (`instruments.messages`); only after the commit is the frame that completed it
acknowledged (`confirm_received`). If the transaction fails on our side (database down, a bug),
the frame is refused (`reject_received`, NAK) so the analyser sends it again: nothing it counts
as delivered is lost. A query answer is queued before the ACK, and sent as soon as the analyser
ends its transfer phase.

Everything one analyser does stays inside its runner: a failing port, garbage on the line or a
peer that vanishes mid-frame ends that line only, and is reported in its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from instruments import service
from instruments.archive import ArchiveFull, TrafficArchive
from instruments.astm.constants import STX
from instruments.astm.errors import AstmError
from instruments.astm.events import (
    Direction,
    Event,
    FrameRejected,
    MessageReceived,
    MessageSent,
    TransferAborted,
)
from instruments.astm.link import Connection, Role
from instruments.astm.record_codec import build_records
from instruments.config import InstrumentConfig, SerialSettings, TcpSettings
from instruments.messages import MessageOutcome, encoding_of, failure_site, handle_raw_message
from instruments.profiles import Profile, SpecimenOrder, get_profile
from instruments.status import InstrumentStatus
from instruments.transports import serial as serial_transport
from instruments.transports import tcp
from instruments.transports.base import ByteChannel, LineDriver, LineOverflow
from lab.catalog import units
from lab.db import transaction
from lab.peers import Refusal

log = logging.getLogger(__name__)


async def _warm_units() -> None:
    with contextlib.suppress(Exception):
        await asyncio.to_thread(units.ucum_problem, "10*9/L")


class LabGateway:
    """The lab services as the analyser side calls them: one transaction per call, in a thread."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def handle(
        self, instrument: InstrumentConfig, profile: Profile, raws: Sequence[bytes]
    ) -> MessageOutcome:
        """The message in one transaction, first without a savepoint per specimen (two
        statements fewer). Should that fail for any reason but the database being away, the
        transaction is rolled back and the message handled again with each specimen under its
        savepoint: what cannot be stored is then kept as unmatched and the rest stored."""
        try:
            with transaction(self.session_factory) as session:
                return handle_raw_message(
                    session, instrument=instrument, profile=profile, raws=raws, guarded=False
                )
        except (OperationalError, InterfaceError):
            raise  # the database is away: the message is refused and comes again
        except Exception:  # noqa: S110 - handled again below, where the failure is kept
            pass
        with transaction(self.session_factory) as session:
            return handle_raw_message(session, instrument=instrument, profile=profile, raws=raws)

    def claim_downloads(self, instrument: InstrumentConfig) -> list[SpecimenOrder]:
        with transaction(self.session_factory) as session:
            return service.orders_to_download(session, instrument=instrument)

    def download_finished(self, instrument: str, accessions: list[str], delivered: bool) -> None:
        with transaction(self.session_factory) as session:
            service.download_finished(
                session, instrument=instrument, accession_numbers=accessions, delivered=delivered
            )


class InstrumentRunner:
    """Runs one configured analyser: its transport, its lines, its order downloads."""

    download_interval = 5.0  # seconds between looks for received specimens to push
    delivery_timeout = 120.0  # give up waiting for a pushed message after this long

    def __init__(
        self,
        instrument: InstrumentConfig,
        *,
        gateway: LabGateway,
        archive: TrafficArchive | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instrument = instrument
        self.profile = get_profile(instrument.profile)
        self.encoding = encoding_of(instrument, self.profile)
        self.gateway = gateway
        self.archive = archive
        self.clock = clock
        self.status = InstrumentStatus(
            name=instrument.name,
            profile=instrument.profile,
            transport=instrument.transport.describe(),
        )
        self._drivers: list[LineDriver] = []
        self._deliveries: dict[tuple[int, int], asyncio.Future[bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def idle_state(self) -> str:
        transport = self.instrument.transport
        if isinstance(transport, TcpSettings) and transport.mode == "server":
            return "listening" if self._server is not None else "error"
        return "waiting"

    @property
    def listening_port(self) -> int | None:
        """The TCP port actually bound in server mode (the configured one, or the one the
        system chose for port 0), once listening."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        # The UCUM registry takes seconds to build; build it now, not while an analyser waits
        # (LIS1-A gives the sender 15 s for the ACK of a message's last frame).
        self._tasks.append(asyncio.create_task(_warm_units()))
        transport = self.instrument.transport
        if isinstance(transport, TcpSettings) and transport.mode == "server":
            self._tasks.append(asyncio.create_task(self._listen(transport)))
        elif isinstance(transport, TcpSettings):
            self.status.state = "connecting"
            self._tasks.append(
                asyncio.create_task(
                    tcp.connect_forever(transport, self.run_line, on_wait=self._waiting)
                )
            )
        elif isinstance(transport, SerialSettings):
            self.status.state = "connecting"
            self._tasks.append(
                asyncio.create_task(
                    serial_transport.run_forever(transport, self.run_line, on_wait=self._waiting)
                )
            )
        if self.instrument.order_download:
            self._tasks.append(asyncio.create_task(self._download_orders()))

    async def _listen(self, transport: TcpSettings) -> None:
        """Bind the listening socket; if the port is taken, report it and try again later."""
        delay = 1.0
        while self._server is None:
            try:
                self._server = await tcp.serve(transport, self.run_line, on_refused=self._refused)
            except OSError as error:
                self.status.state = "error"
                self.status.error(f"cannot listen on {transport.host}:{transport.port}: {error}")
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
        if self.status.connections == 0:
            self.status.state = "listening"

    def _refused(self, peer: str, refusal: Refusal) -> None:
        """A stranger or a second connection at the analyser's port: never silently added."""
        if refusal.over_cap:
            self.status.raise_alarm(
                "second connection refused",
                f"second connection from {peer} refused while {self.status.peer} is connected",
                refused=True,
            )
        else:
            self.status.raise_alarm(
                "connection from a peer not allowed",
                f"refused {peer}: {refusal.reason}",
                refused=True,
            )

    def _waiting(self, delay: float, reason: str) -> None:
        self.status.state = "waiting"
        self.status.error(f"{reason}; trying again in {delay:.0f} s")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        for driver in list(self._drivers):
            driver.stop()
            await driver.channel.close()
        for driver in list(self._drivers):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.closed.wait(), 2.0)
        self.status.state = "stopped"

    # ------------------------------------------------------------------ one line

    async def run_line(self, channel: ByteChannel) -> None:
        """Hold one conversation with the analyser until the line closes."""
        driver = LineDriver(
            Connection(role=Role.HOST),
            channel,
            on_event=self._on_event,
            on_traffic=self._keep_traffic,
            clock=self.clock,
        )
        self._drivers.append(driver)
        self.status.link_up(channel.peer)
        try:
            await driver.run()
        except LineOverflow as overflow:
            self.status.raise_alarm("line closed: too much data", f"{channel.peer}: {overflow}")
        except ArchiveFull:
            pass  # alarmed in _keep_traffic; the line closes
        finally:
            if self.archive is not None:
                with contextlib.suppress(OSError):
                    # The line's last bytes on disk: once per line, so on the loop's thread.
                    self.archive.sync_now(self.instrument.name)
            self._drivers.remove(driver)
            for (line, _), future in list(self._deliveries.items()):
                if line == id(driver) and not future.done():
                    future.set_result(False)
            self.status.link_down(self.idle_state)

    def _keep_traffic(self, writer: Role, data: bytes) -> None:
        """Each piece in the archive file (handed to the operating system) before the link
        layer reads it or the line carries it: a small write on the loop's thread."""
        if writer is Role.INSTRUMENT:
            self.status.frames_received += data.count(STX)
        if self.archive is not None:
            try:
                self.archive.keep_now(self.instrument.name, writer, data, durable=False)
            except ArchiveFull as full:
                self.status.raise_alarm("archive quota reached", str(full))
                raise  # the line closes: nothing unarchived is read or sent

    async def _on_event(self, driver: LineDriver, event: Event) -> None:
        if isinstance(event, MessageReceived):
            await self._message_received(driver, event)
        elif isinstance(event, FrameRejected):
            self.status.frames_rejected += 1
        elif isinstance(event, MessageSent):
            self.status.messages_sent += 1
            self._delivered(driver, event.message_number, True)
        elif isinstance(event, TransferAborted):
            if event.direction is Direction.SENDING:
                self.status.messages_not_delivered += 1
                self._delivered(driver, event.message_number, False)
            else:
                self.status.error(f"incomplete message discarded: {event.reason.value}")

    def _store(self, records: Sequence[bytes]) -> MessageOutcome:
        """In a worker thread: the message's raw bytes forced to disk, then its transaction
        (one thread hop for both)."""
        if self.archive is not None:
            self.archive.sync_now(self.instrument.name)
        return self.gateway.handle(self.instrument, self.profile, records)

    async def _message_received(self, driver: LineDriver, event: MessageReceived) -> None:
        connection = driver.connection
        self.status.message_received()
        try:
            outcome = await asyncio.to_thread(self._store, event.records)
        except Exception as error:
            # Ours, not the analyser's (database down, a bug): refuse the last frame so the
            # analyser sends it again; its earlier frames stay buffered in the connection.
            # The log and the status name the message and the kind of failure only: an
            # error's text may quote a value or an identifier from the message.
            where = failure_site(error)
            log.error(
                "analyser %s: message %d not stored (%s at %s); asked to send it again",
                self.instrument.name,
                self.status.messages_received,
                type(error).__name__,
                where,
            )
            self.status.error(
                f"message not stored ({type(error).__name__}), analyser asked to send again"
            )
            if event.needs_confirmation:
                connection.reject_received(self.clock())
            return
        self.status.results_recorded += outcome.recorded
        self.status.results_repeated += outcome.repeated
        self.status.unmatched += outcome.unmatched
        self.status.qc_results += outcome.qc
        for note in outcome.notes:
            self.status.error(note)
        if outcome.reply:
            try:
                raws = build_records(outcome.reply, encoding=self.encoding, trim=True)
                connection.send_message(raws, self.clock())
                self.status.queries_answered += outcome.queries
            except AstmError as error:
                self.status.error(f"query answer could not be built: {error}")
        if event.needs_confirmation:
            connection.confirm_received(self.clock())  # committed: now the ACK may go

    # ------------------------------------------------------------------ order download

    def _delivered(self, driver: LineDriver, number: int | None, delivered: bool) -> None:
        if number is None:
            return
        future = self._deliveries.pop((id(driver), number), None)
        if future is not None and not future.done():
            future.set_result(delivered)

    async def push(self, orders: Sequence[SpecimenOrder]) -> bool:
        """Send orders to the analyser on its one line; True once every frame is ACKed.

        A line exists only for an admitted peer (`allowed_peers`, one connection at a time),
        so orders never go to anyone else; with no line, or (never expected) more than one,
        nothing is sent and the specimens wait for the next look.
        """
        if len(self._drivers) != 1 or not orders:
            return False
        driver = self._drivers[0]
        now = self.instrument.wall_clock(datetime.now(UTC))  # H-14 in the analyser's zone
        records = self.profile.orders_message(
            orders, host_name=self.instrument.host_name, reply_to=None, now=now
        )
        raws = build_records(records, encoding=self.encoding, trim=True)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        number = driver.connection.send_message(raws, self.clock())
        self._deliveries[(id(driver), number)] = future
        await driver.process()
        try:
            return await asyncio.wait_for(future, self.delivery_timeout)
        except TimeoutError:
            return False

    async def _download_orders(self) -> None:
        while True:
            await asyncio.sleep(self.download_interval)
            if len(self._drivers) != 1:
                continue
            try:
                orders = await asyncio.to_thread(self.gateway.claim_downloads, self.instrument)
                if not orders:
                    continue
                delivered = await self.push(orders)
                accessions = [order.accession_number for order in orders]
                await asyncio.to_thread(
                    self.gateway.download_finished, self.instrument.name, accessions, delivered
                )
                if delivered:
                    self.status.orders_downloaded += len(orders)
            except Exception as error:  # a failing batch is logged; the job goes on
                log.error(
                    "analyser %s: order download failed (%s at %s)",
                    self.instrument.name,
                    type(error).__name__,
                    failure_site(error),
                )
                self.status.error(f"order download failed ({type(error).__name__})")
