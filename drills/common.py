"""What every drill needs beyond the test kit: a summary line, and senders that keep count of
what was acknowledged.

Everything is on loopback. A drill's database is made fresh on the machine's PostgreSQL
(`LAB_DRILL_DATABASE_URL`, `LAB_TEST_DATABASE_URL` or postgres@127.0.0.1:5432, as the
benchmarks do) and dropped afterwards, except the PostgreSQL-restart drill, which owns an
embedded server (never restart the machine's shared PostgreSQL). The database, the `lab serve`
child, the fake record and the serial line come from `testkit`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from instruments.astm.records import Record
from instruments.profiles import MeasuredResult, SpecimenOrder, get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from testkit.database import scratch_database, server_url
from testkit.mllp import MllpConnection, ack_code
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from testkit.process import Analyser

SERVER = server_url("LAB_DRILL_DATABASE_URL")
GENERIC = get_profile("generic")
# The analysers of a drill's `lab serve`: one on TCP, and one on a serial line where asked.
TCP = Analyser(name="drill-tcp")
SERIAL = Analyser(name="drill-serial", line="serial")


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillResult:
    name: str
    ok: bool
    summary: str

    @classmethod
    def judged(
        cls, name: str, summary: str, problems: Sequence[str], *, shown: int | None = None
    ) -> DrillResult:
        """Passed when no problem was found; the problems (the first `shown`) end the summary."""
        if problems:
            summary += "; PROBLEMS: " + "; ".join(problems[:shown])
        return cls(name=name, ok=not problems, summary=summary)


# A fødselsnummer, D- or H-number: eleven digits, the last five maybe set apart.
NATIONAL_NUMBER = re.compile(r"(?<!\d)\d{6}[ -]?\d{5}(?!\d)")


def patient_data_in_logs(folder: Path) -> list[str]:
    """What patient data the `lab serve` logs under `folder` hold: national numbers and the
    synthetic patients' family names (the lab must log neither). Says which log and what kind,
    never the value. The fake record's own log (`record.log`) is the receiving side's and is
    not scanned: showing what it received is its job."""
    families = {patient.family for patient in synthetic_patients(12)}
    found: list[str] = []
    for log in sorted(folder.rglob("lab-serve.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        where = str(log.relative_to(folder))
        if NATIONAL_NUMBER.search(text):
            found.append(f"{where} holds a national number")
        named = sorted(name for name in families if name in text)
        if named:
            found.append(f"{where} holds {len(named)} patient name(s)")
    return found


@contextmanager
def fresh_database(label: str, server: str = SERVER) -> Iterator[str]:
    """A new database on `server`, migrated and seeded (demo catalog and users); dropped after."""
    with scratch_database(server, f"drill_{label}") as database:
        yield database.url


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


# --------------------------------------------------------------------------- the senders


@dataclass(slots=True)
class OrderLoad:
    """Orders sent over MLLP: each message, and whether (and how) it was acknowledged."""

    label: str
    messages: dict[str, bytes] = field(default_factory=dict)  # control ID -> message
    acked: dict[str, str] = field(default_factory=dict)  # control ID -> MSA-1

    def make(self, count: int, *, tests: Sequence[str] = ("HB",)) -> list[str]:
        start = len(self.messages)
        patients = synthetic_patients(count, seed=hash(self.label) % 10_000 + start)
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
                connection = await MllpConnection.open("127.0.0.1", port)
            except (OSError, TimeoutError):
                if loop.time() > give_up:
                    break
                await asyncio.sleep(0.3)
                continue
            try:
                while pending:
                    ack = await connection.exchange(self.messages[pending[0]])
                    self.acked[pending.pop(0)] = ack_code(ack)
            except (OSError, TimeoutError):
                if loop.time() > give_up:
                    break
                await asyncio.sleep(0.3)
            finally:
                await connection.close()
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


def orders_stored(url: str, placers: Sequence[str]) -> dict[str, int]:
    """placer number -> how many orders carry it (1 for each, or an order was lost or doubled)."""
    return counts(
        url,
        "SELECT placer_order_number, count(*) FROM lab_order "
        "WHERE placer_order_number = ANY(:p) GROUP BY 1",
        p=list(placers),
    )


def result_versions(url: str, accessions: Sequence[str]) -> dict[str, int]:
    """accession number -> how many result versions its specimen holds."""
    return counts(
        url,
        "SELECT s.accession_number, count(v.id) FROM specimen s JOIN result r ON "
        "r.specimen_id = s.id JOIN result_version v ON v.result_id = r.id "
        "WHERE s.accession_number = ANY(:a) GROUP BY 1",
        a=list(accessions),
    )


@dataclass(frozen=True, slots=True)
class Recovery:
    stored: dict[str, int]  # placer number -> orders stored
    versions: dict[str, int]  # accession number -> result versions
    problems: list[str]


def check_recovery(
    url: str,
    *,
    placers: Sequence[str],
    accessions: Sequence[str],
    orders: OrderLoad,
    health: dict[str, Any],
    same_process: bool,
) -> Recovery:
    """What a drill that took the database away under load must not find afterwards: an order
    or a result missing or stored twice, an order not accepted, a lab module that did not
    recover by itself."""
    stored = orders_stored(url, placers)
    versions = result_versions(url, accessions)
    problems: list[str] = []
    if len(stored) != len(placers) or any(n != 1 for n in stored.values()):
        problems.append(f"orders stored: {len(stored)}/{len(placers)}, some twice or missing")
    if set(orders.acked.values()) != {"AA"}:
        problems.append(f"ACK codes {sorted(set(orders.acked.values()))}")
    if len(versions) != len(accessions) or any(n != 1 for n in versions.values()):
        problems.append(f"results stored: {len(versions)}/{len(accessions)}")
    if health.get("database", {}).get("state") != "up" or not same_process:
        problems.append(f"not recovered: {health}")
    return Recovery(stored=stored, versions=versions, problems=problems)
