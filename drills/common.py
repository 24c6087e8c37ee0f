"""What every drill needs: its own database, a `lab serve` child with chosen settings, and
senders that keep count of what was acknowledged.

Everything is on loopback. A drill's database is made fresh on the machine's PostgreSQL
(`LAB_DRILL_DATABASE_URL`, `LAB_TEST_DATABASE_URL` or postgres@127.0.0.1:5432, as the
benchmarks do) and dropped afterwards, except the PostgreSQL-restart drill, which owns an
embedded server (never restart the machine's shared PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from instruments.astm.records import Record
from instruments.profiles import MeasuredResult, SpecimenOrder, get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.db import make_engine, to_psycopg_url
from lab.demo import seed
from lab.demo_day import (
    LabProcess,
    PtyLine,
    RecordReceiver,
    ack_code,
    demo_patients,
    free_port,
    make_token,
    oml_o21,
)
from lab.hl7.codec.mllp import MllpDecoder, frame
from lab.migrate import upgrade

SERVER = to_psycopg_url(
    os.environ.get("LAB_DRILL_DATABASE_URL")
    or os.environ.get("LAB_TEST_DATABASE_URL")
    or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PASSWORD = "drill password"  # noqa: S105 - the demo users of a throwaway database
GENERIC = get_profile("generic")


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillResult:
    name: str
    ok: bool
    summary: str


@contextmanager
def fresh_database(label: str, server: str = SERVER) -> Iterator[str]:
    """A new database on `server`, migrated and seeded (demo catalog and users); dropped after."""
    name = f"lab_drill_{label}_{secrets.token_hex(3)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        prepare(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(url: str) -> None:
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    with Session(engine) as session:
        seed(session, password=PASSWORD)
        session.commit()
    engine.dispose()


def scalar(url: str, sql: str, **params: object) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def rows(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params).all()]
    finally:
        engine.dispose()


@dataclass(slots=True, kw_only=True)
class Lab:
    """A running `lab serve` of a drill, with its ports and helpers."""

    process: LabProcess
    url: str
    mllp_port: int
    astm_port: int
    pty: PtyLine | None
    receiver: RecordReceiver | None
    folder: Path

    def restart(self, how: signal.Signals = signal.SIGINT) -> int | None:
        status = self.process.stop(how)
        self.process.start()
        return status

    def token(self, username: str) -> str:
        return make_token(self.url, username)


def instruments_file(folder: Path, *, astm_port: int, pty: PtyLine | None) -> Path:
    text_ = (
        '[[instrument]]\nname = "drill-tcp"\nprofile = "generic"\nlocal_codes = true\n'
        f'[instrument.tcp]\nmode = "server"\nhost = "127.0.0.1"\nport = {astm_port}\n'
    )
    if pty is not None:
        text_ += (
            '\n[[instrument]]\nname = "drill-serial"\nprofile = "generic"\nlocal_codes = true\n'
            f'[instrument.serial]\nport = "{pty.path}"\nbaudrate = 9600\n'
        )
    path = folder / "instruments.toml"
    path.write_text(text_)
    return path


@asynccontextmanager
async def running_lab(
    url: str,
    folder: Path,
    *,
    serial: bool = False,
    record: bool = False,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Lab]:
    folder.mkdir(parents=True, exist_ok=True)
    pty = PtyLine() if serial else None
    receiver = RecordReceiver(log_path=folder / "record.log") if record else None
    record_port = await receiver.start() if receiver is not None else 0
    mllp_port, astm_port = free_port(), free_port()
    env = {
        "LAB_DATABASE_URL": url,
        "LAB_DATA_DIR": str(folder / "var"),
        "LAB_MLLP_PORT": str(mllp_port),
        "LAB_INSTRUMENTS_FILE": str(instruments_file(folder, astm_port=astm_port, pty=pty)),
    }
    if receiver is not None:
        env["LAB_EHR_MLLP_URL"] = f"mllp://127.0.0.1:{record_port}"
    env.update(extra_env or {})
    process = LabProcess(env=env, http_port=free_port(), log_path=folder / "lab-serve.log")
    lab = Lab(
        process=process,
        url=url,
        mllp_port=mllp_port,
        astm_port=astm_port,
        pty=pty,
        receiver=receiver,
        folder=folder,
    )
    try:
        await asyncio.to_thread(process.start)
        yield lab
    finally:
        await asyncio.to_thread(lab.process.stop)
        if receiver is not None:
            await receiver.stop()
        if pty is not None:
            pty.close()


# --------------------------------------------------------------------------- the senders


@dataclass(slots=True)
class OrderLoad:
    """Orders sent over MLLP: each message, and whether (and how) it was acknowledged."""

    label: str
    messages: dict[str, bytes] = field(default_factory=dict)  # control ID -> message
    acked: dict[str, str] = field(default_factory=dict)  # control ID -> MSA-1

    def make(self, count: int, *, tests: Sequence[str] = ("HB",)) -> list[str]:
        start = len(self.messages)
        patients = demo_patients(count, seed=hash(self.label) % 10_000 + start)
        made = []
        for number, patient in enumerate(patients, start=start):
            placer = f"{self.label}{number:05d}"
            self.messages[placer] = oml_o21(
                control_id=placer, placer=placer, patient=patient, tests=tests
            )
            made.append(placer)
        return made

    async def send(self, port: int, control_ids: Sequence[str], *, retry_for: float = 0) -> int:
        """Send each unacknowledged message once in order on one connection (reconnecting
        after a drop, while `retry_for` seconds last); returns how many were acknowledged."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + retry_for
        pending = [c for c in control_ids if c not in self.acked]
        while pending:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if loop.time() > give_up:
                    break
                await asyncio.sleep(0.3)
                continue
            decoder = MllpDecoder()
            try:
                while pending:
                    writer.write(frame(self.messages[pending[0]]))
                    await writer.drain()
                    while not isinstance(block := decoder.next_message(), bytes):
                        chunk = await asyncio.wait_for(reader.read(65536), 30)
                        if not chunk:
                            raise ConnectionError("closed without an ACK")
                        decoder.receive_data(chunk)
                    self.acked[pending.pop(0)] = ack_code(block)
            except (OSError, TimeoutError):
                if loop.time() > give_up:
                    break
                await asyncio.sleep(0.3)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        return sum(1 for c in control_ids if c in self.acked)


@dataclass(slots=True)
class ResultLoad:
    """Results sent as an analyser would: one message per specimen, the same bytes on a resend
    (fixed values and time), so a resend is a repeat and not a new measurement."""

    accepted: dict[str, str] = field(default_factory=dict)  # accession -> value
    tried: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def message(accession: str, value: str) -> list[Record]:
        order = SpecimenOrder(accession_number=accession, test_codes=("HB",))
        measured = [MeasuredResult(test_code="HB", value=value, unit="g/dL")]
        when = datetime(2026, 11, 27, 10, 0, 0)
        return GENERIC.results_message(order, measured, name="DRILL", now=when)

    async def send(self, port: int, accessions: Sequence[str], *, retry_for: float = 0) -> int:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + retry_for
        pending = [a for a in accessions if a not in self.accepted]
        while pending:
            analyser = VirtualAnalyser(profile=GENERIC, name="DRILL", answer_timeout=10)
            try:
                channel = await tcp.open_channel("127.0.0.1", port, timeout=5)
            except (OSError, TimeoutError):
                if loop.time() > give_up:
                    break
                await asyncio.sleep(0.3)
                continue
            async with analyser.on_line(channel):
                while pending:
                    accession = pending[0]
                    value = self.tried.setdefault(
                        accession, f"{12 + len(self.tried) % 40 / 10:.1f}"
                    )
                    if not await analyser.send(self.message(accession, value)):
                        break  # line gone or frames refused: reconnect and send it again
                    self.accepted[pending.pop(0)] = value
            if pending and loop.time() > give_up:
                break
            if pending:
                await asyncio.sleep(0.3)
        return sum(1 for a in accessions if a in self.accepted)


def counts(url: str, sql: str, **params: object) -> dict[str, int]:
    """{key: count} from a query selecting two columns."""
    return {str(key): int(str(count)) for key, count in rows(url, sql, **params)}


def accessions_of(url: str, placers: Sequence[str]) -> dict[str, str]:
    """placer number -> the accession number of its (one) specimen."""
    found = rows(
        url,
        "SELECT o.placer_order_number, s.accession_number FROM lab_order o "
        "JOIN specimen s ON s.order_id = o.id WHERE o.placer_order_number = ANY(:p)",
        p=list(placers),
    )
    return {str(p): str(a) for p, a in found}
