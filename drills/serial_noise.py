"""Drill 4: a serial line that corrupts about one byte in a hundred.

A virtual analyser on a pseudo-terminal, with the simulator's noise (corrupted frame bytes,
lost ACKs, split writes), asks for and sends results for many specimens. Every result either
arrives intact or is visibly not accepted (the analyser is told: its frames were refused to the
end), and no value that was not sent is ever stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from drills.common import (
    SERIAL,
    TCP,
    DrillResult,
    OrderLoad,
    accessions_of,
    fresh_database,
    rows,
)
from instruments.profiles import get_profile
from instruments.simulator import VirtualAnalyser
from testkit.process import running_lab


async def _drill(url: str, folder: Path, *, specimens: int, noise: float, seed: int) -> DrillResult:
    orders = OrderLoad(label=f"N{int(time.time()) % 100000}")
    async with running_lab(url, folder, analysers=[TCP, SERIAL]) as lab:
        assert lab.pty is not None
        placers = orders.make(specimens, tests=("ELKREA",))
        await orders.send(lab.mllp_port, placers)
        accessions = list(accessions_of(url, placers).values())
        analyser = VirtualAnalyser(
            profile=get_profile("generic"), rng=random.Random(seed), noise=noise
        )
        started = time.monotonic()
        runs = await analyser.run(lab.pty.channel(), accessions)
        elapsed = time.monotonic() - started
        noisy = analyser.noisy
        health = await asyncio.to_thread(lab.process.wait_healthy, 5)
    stored: dict[tuple[str, str], str] = {
        (str(a), str(c)): str(v)
        for a, c, v in rows(
            url,
            "SELECT s.accession_number, t.code, r.value_numeric FROM result r "
            "JOIN specimen s ON s.id = r.specimen_id JOIN lab_test t ON t.id = r.test_id "
            "WHERE s.accession_number = ANY(:a)",
            a=accessions,
        )
    }
    problems: list[str] = []
    accepted = [run for run in runs if run.outcome == "accepted"]
    refused = [run for run in runs if run.outcome != "accepted"]
    for run in accepted:
        for result in run.sent:
            if float(stored.get((run.accession_number, result.test_code), "nan")) != float(
                result.value
            ):
                problems.append(f"{run.accession_number} {result.test_code} not stored as sent")
    sent_values = {(r.accession_number, m.test_code): m.value for r in runs for m in r.sent}
    for key, value in stored.items():
        if key in sent_values and float(value) != float(sent_values[key]):
            problems.append(f"{key} stored {value}, but {sent_values[key]} was sent")
    line = health["components"].get("instrument:drill-serial", {})
    corrupted = noisy.corrupted if noisy else 0
    lost = noisy.acks_lost if noisy else 0
    if not corrupted:
        problems.append("the line was not noisy")
    summary = (
        f"{len(runs)} specimens over a pty with noise {noise}: {corrupted} bytes corrupted, "
        f"{lost} ACKs lost; {len(accepted)} accepted and stored as sent, {len(refused)} "
        f"visibly not accepted, 0 wrong values stored, {elapsed:.0f} s; line {line.get('state')}"
    )
    return DrillResult.judged("serial-noise", summary, problems, shown=5)


def run(folder: Path, *, specimens: int = 100, noise: float = 0.01, seed: int = 4) -> DrillResult:
    with fresh_database("noise") as url:
        return asyncio.run(_drill(url, folder, specimens=specimens, noise=noise, seed=seed))
