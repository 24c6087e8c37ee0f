"""What one message costs the intake, in figures a busy machine disturbs little.

- `order_cost` and `analyser_cost`: one OML^O21 (five ORC/OBR pairs) through the listener's
  store-process-ACK path, and one analyser message (H, P, O, five R, L) through the analyser
  runner's transaction (`LabGateway.handle`), in this process without sockets: SQL statements
  and commits per message (engine events) and this process's CPU time per message.
- `CpuMeter`: the CPU time a phase of the outside measurement cost the `lab serve` process
  tree (worker 0 and its intake children) and the PostgreSQL backends of the benchmark's
  database, read from /proc (Linux), beside this process's own (the benchmark's clients) and
  the whole machine's, so that the cores' time of a phase splits into lab serve, PostgreSQL,
  clients, other programs and idle. Divided by the messages of the phase, it says what each
  message cost each side however many other programs shared the cores meanwhile. A backend that
  ends during the phase (a pooled connection closed, a worker gone) counts up to the last time
  the meter saw it: the meter looks every quarter second.
- `settle`: VACUUM ANALYZE of the whole database, what PostgreSQL's autovacuum does in
  production as tables grow (this machine's server runs with `autovacuum = off`), and the CPU
  it cost, so that its share of a phase can be printed beside the phase's figures.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.bench_hl7_flow import _intake
from instruments.astm.record_codec import build_records
from instruments.config import InstrumentConfig, TcpSettings
from instruments.profiles import SpecimenOrder, get_profile
from instruments.runner import LabGateway
from instruments.simulator import VirtualAnalyser
from lab.audit import Actor
from lab.db import make_engine, make_session_factory, transaction
from lab.hl7.inbox import Inbox
from lab.specimens import service as specimens

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: The meter's own connections, left out of the backends it counts.
_METER = "bench-cpu-meter"


@dataclass(frozen=True, slots=True)
class Cost:
    statements: float
    commits: float
    cpu_ms: float
    wall_ms: float

    def line(self) -> str:
        return (
            f"{self.statements:.1f} statements, {self.commits:.1f} commits, "
            f"CPU {self.cpu_ms:.1f} ms, wall {self.wall_ms:.1f} ms"
        )


class _Counted:
    """Statements and commits sent through `engine` while the block runs."""

    def __init__(self, engine: Any) -> None:
        self.statements = 0
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.statements = self.commits = 0


def _timed(work: Sequence[Any], run: Any, counted: _Counted) -> Cost:
    import time

    counted.reset()
    cpu, wall = time.process_time(), time.perf_counter()
    for item in work:
        run(item)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = len(work)
    return Cost(
        statements=counted.statements / n,
        commits=counted.commits / n,
        cpu_ms=cpu * 1000 / n,
        wall_ms=wall * 1000 / n,
    )


def order_cost(url: str, messages: list[bytes]) -> Cost:
    """Per order, the first 10 messages warming caches and prepared statements."""
    engine = make_engine(url, pool_size=1)
    counted = _Counted(engine)
    inbox = Inbox(make_session_factory(engine))
    try:
        for raw in messages[:10]:
            _intake(inbox, raw)
        return _timed(messages[10:], lambda raw: _intake(inbox, raw), counted)
    finally:
        engine.dispose()


def receive_tubes(url: str, placer_prefix: str, actor: Actor) -> list[str]:
    """Receive every tube of the orders placed under `placer_prefix` (100 a transaction);
    their accession numbers in the order they were made."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        numbers = [
            str(n)
            for (n,) in connection.execute(
                text(
                    "SELECT s.accession_number FROM specimen s JOIN lab_order o "
                    "ON o.id = s.order_id WHERE o.placer_order_number LIKE :p ORDER BY s.id"
                ),
                {"p": f"{placer_prefix}%"},
            )
        ]
    factory = make_session_factory(engine)
    for start in range(0, len(numbers), 100):
        with transaction(factory) as session:
            for number in numbers[start : start + 100]:
                specimens.receive(session, actor=actor, number=number)
    engine.dispose()
    return numbers


def analyser_cost(url: str, placer_prefix: str, tests: Sequence[str], actor: Actor) -> Cost:
    """Per analyser message of `tests` (one per tube of the orders placed under
    `placer_prefix`, received first), the first 10 warming up."""
    numbers = receive_tubes(url, placer_prefix, actor)
    engine = make_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    instrument = InstrumentConfig(
        name="bench-cost",
        profile="generic",
        transport=TcpSettings(mode="server", host="127.0.0.1", port=1),
        local_codes=True,
    )
    profile = get_profile("generic")
    analyser = VirtualAnalyser(profile=profile, name="SIM", rng=random.Random(11))
    now = datetime.now().replace(microsecond=0)  # an analyser keeps its local time

    def raws(number: str) -> list[bytes]:
        sent = [analyser.measure(code, now) for code in tests]
        order = SpecimenOrder(accession_number=number, test_codes=tuple(tests))
        records = profile.results_message(order, sent, name="SIM", now=now)
        return build_records(records, encoding=profile.default_encoding, trim=True)

    messages = [raws(number) for number in numbers]

    gateway = LabGateway(factory)  # what the analyser runner does with a message

    def one(message: list[bytes]) -> None:
        outcome = gateway.handle(instrument, profile, message)
        if outcome.recorded != len(tests):
            raise RuntimeError(f"recorded {outcome.recorded} of {len(tests)}")

    counted = _Counted(engine)
    try:
        for message in messages[:10]:
            one(message)
        return _timed(messages[10:], one, counted)
    finally:
        engine.dispose()


# --- CPU of the server side, from /proc ------------------------------------------------------


def autovacuum_setting(url: str) -> str:
    """The server's `autovacuum` setting ('on' in production; this machine's is 'off')."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW autovacuum")).scalar_one())
    finally:
        engine.dispose()


def settle(url: str) -> float:
    """VACUUM ANALYZE the database, as autovacuum does in production once a table has changed
    by a tenth (dead row versions of UPDATEs made reusable, the planner's statistics renewed,
    and with them every connection's cached plans made again); the CPU seconds it took its
    backend."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            pid = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            before = _cpu_seconds(pid) or 0.0
            connection.execute(text("VACUUM ANALYZE"))
            return (_cpu_seconds(pid) or before) - before
    finally:
        engine.dispose()


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found = [root]
    for pid in sorted(parents):
        chain, seen = pid, set()
        while chain in parents and chain not in seen:
            seen.add(chain)
            chain = parents[chain]
            if chain == root:
                found.append(pid)
                break
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, all seconds of all cores): from the
    first line of /proc/stat, idle and iowait being the not-busy part."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _TICK, total / _TICK


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """Where the cores' time went during a phase, in seconds: the `lab serve` process tree, the
    database's PostgreSQL backends, this process (the benchmark's clients), the rest of the
    machine (other programs, the kernel's own threads) and idle."""

    lab: float
    postgres: float
    clients: float
    other: float
    idle: float

    def per_message(self, messages: float) -> CpuSplit:
        n = max(1.0, messages)
        return CpuSplit(
            *(
                seconds * 1000 / n
                for seconds in (self.lab, self.postgres, self.clients, self.other, self.idle)
            )
        )

    def line(self) -> str:
        """Of a split per message (ms)."""
        return (
            f"{self.lab:.1f} ms lab serve, {self.postgres:.1f} ms PostgreSQL, "
            f"{self.clients:.1f} ms the benchmark's clients, {self.other:.1f} ms other, "
            f"{self.idle:.1f} ms idle"
        )


@dataclass(frozen=True, slots=True)
class CpuReading:
    lab: dict[int, float]
    postgres: dict[int, float]
    clients: float
    machine_busy: float
    machine_total: float


class CpuMeter:
    """CPU seconds of a process tree, of the database's backends, of this process (whose
    asyncio clients play the record and the analysers) and of the whole machine between two
    readings. Between readings it looks at the backends every `every` seconds, so that one
    that ends meanwhile still counts (up to the last look)."""

    def __init__(self, url: str, root_pid: int | None, *, every: float = 0.25) -> None:
        self.engine = make_engine(url, pool_size=2)
        event.listen(self.engine, "connect", _name_meter)
        self.root_pid = root_pid
        with self.engine.connect() as connection:
            self.database = connection.execute(text("SELECT current_database()")).scalar_one()
        self._seen: dict[int, float] = {}  # backend pid -> its CPU seconds at the last look
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(every,), daemon=True)
        self._watcher.start()

    def _backends(self) -> list[int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d "
                    "AND application_name <> :meter"
                ),
                {"d": self.database, "meter": _METER},
            )
            return [int(pid) for (pid,) in rows]

    def _look(self) -> dict[int, float]:
        found = self._read(self._backends())
        with self._lock:
            self._seen.update(found)
            return dict(self._seen)

    def _watch(self, every: float) -> None:
        while not self._closing.wait(every):
            try:
                self._look()
            except Exception:  # the database going away ends the phase anyway
                continue

    def reading(self) -> CpuReading:
        lab = {} if self.root_pid is None else self._read(_tree(self.root_pid))
        postgres = self._look()
        times = os.times()
        busy, total = _machine_busy()
        return CpuReading(lab, postgres, times.user + times.system, busy, total)

    @staticmethod
    def _read(pids: list[int]) -> dict[int, float]:
        return {pid: cpu for pid in pids if (cpu := _cpu_seconds(pid)) is not None}

    def since(self, start: CpuReading) -> CpuSplit:
        """Since `start`: processes that appeared meanwhile count whole (as does one whose pid
        was another's before: it has spent less than the pid's earlier owner had)."""
        now = self.reading()

        def grown(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(
                cpu - before.get(pid, 0.0) if cpu >= before.get(pid, 0.0) else cpu
                for pid, cpu in after.items()
            )

        lab = grown(start.lab, now.lab)
        postgres = grown(start.postgres, now.postgres)
        clients = now.clients - start.clients
        busy = now.machine_busy - start.machine_busy
        return CpuSplit(
            lab=lab,
            postgres=postgres,
            clients=clients,
            other=max(0.0, busy - lab - postgres - clients),
            idle=max(0.0, (now.machine_total - start.machine_total) - busy),
        )

    def close(self) -> None:
        self._closing.set()
        self._watcher.join(5)
        self.engine.dispose()


def _name_meter(connection: Any, _record: Any) -> None:
    connection.execute(f"SET application_name = '{_METER}'")
    connection.commit()
