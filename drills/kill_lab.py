"""Drill 1: the lab module killed with SIGKILL during a load of orders and results.

Orders go in over MLLP and results over ASTM/TCP while the process is killed outright. After a
restart, what was not acknowledged is sent again (same bytes: same MSH-10, same result). Then:
nothing acknowledged is lost, and nothing is stored twice (one order per placer number, one
inbound log row per control ID, one result version per specimen).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from drills.common import (
    TCP,
    DrillResult,
    OrderLoad,
    ResultLoad,
    accessions_of,
    counts,
    fresh_database,
    orders_stored,
    result_versions,
)
from testkit.process import running_lab


async def _drill(url: str, folder: Path, *, seconds: float) -> DrillResult:
    orders = OrderLoad(label=f"K{int(time.time()) % 100000}")
    results = ResultLoad()
    async with running_lab(url, folder, analysers=[TCP]) as lab:
        placers = orders.make(800)
        first = placers[:300]
        await orders.send(lab.mllp_port, first)  # some specimens to send results for
        accessions = list(accessions_of(url, first).values())

        async def load() -> None:
            await asyncio.gather(
                orders.send(lab.mllp_port, placers[300:]),
                results.send(lab.astm_port, accessions),
                return_exceptions=True,
            )

        loading = asyncio.create_task(load())
        await asyncio.sleep(seconds)
        acked_before = dict(orders.acked)
        accepted_before = dict(results.accepted)
        await asyncio.to_thread(lab.process.stop, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loading, 40)
        await asyncio.to_thread(lab.process.start)
        # after the restart: send again what was not acknowledged
        await orders.send(lab.mllp_port, placers, retry_for=30)
        more = list(accessions_of(url, placers[300:360]).values())
        await results.send(lab.astm_port, accessions + more, retry_for=30)

    problems: list[str] = []
    stored_orders = orders_stored(url, placers)
    logged = counts(
        url,
        "SELECT control_id, count(*) FROM hl7_message WHERE direction = 'in' "
        "AND control_id = ANY(:p) GROUP BY 1",
        p=placers,
    )
    lost = [p for p in acked_before if acked_before[p] == "AA" and p not in stored_orders]
    twice = [p for p, n in stored_orders.items() if n != 1] + [
        c for c, n in logged.items() if n != 1
    ]
    if lost:
        problems.append(f"{len(lost)} acknowledged orders lost")
    if twice:
        problems.append(f"{len(twice)} orders stored twice")
    if len(orders.acked) != len(placers):
        problems.append(
            f"only {len(orders.acked)} of {len(placers)} orders acknowledged in the end"
        )
    versions = result_versions(url, list(results.tried))
    lost_results = [a for a in accepted_before if a not in versions]
    double = [a for a, n in versions.items() if n != 1]
    if lost_results:
        problems.append(f"{len(lost_results)} acknowledged results lost")
    if double:
        problems.append(f"{len(double)} results stored twice")
    if len(results.accepted) != len(results.tried):
        problems.append(f"{len(results.tried) - len(results.accepted)} results never accepted")
    summary = (
        f"killed after {seconds:.0f} s of load: {len(acked_before)} orders and "
        f"{len(accepted_before)} results acknowledged before the kill; after restart and resend "
        f"{len(stored_orders)}/{len(placers)} orders and {len(versions)}/{len(results.tried)} "
        "results stored, each once"
    )
    return DrillResult.judged("kill", summary, problems)


def run(folder: Path, *, seconds: float = 4.0) -> DrillResult:
    with fresh_database("kill") as url:
        return asyncio.run(_drill(url, folder, seconds=seconds))
