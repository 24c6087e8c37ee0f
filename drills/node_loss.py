"""Drill: one of two lab nodes on one PostgreSQL is lost under load; the other carries on.

Two `lab serve` nodes share one database, both with every role, as docs/install.md describes
for several machines. Node A has the analyser. Results are verified while the record is down, so
their ORUs wait in the outbox; then, with orders arriving, the record comes back slow (each ACK
after 2 s), so both nodes' dispatchers hold claimed ORUs in flight. Once node A holds some, it
is SIGKILLed (its whole process group: the node is gone) and the record answers at once again.
The record's sender does what a record's interface engine does: it sends to A, and when A stops
answering it sends what was not acknowledged to B. Afterwards every order is stored once, every
ACK was AA, node B has delivered every waiting ORU, and it took over the ORUs node A had claimed
within seconds: A's claim number was an advisory lock of A's database session, which ended
with A (docs/install.md, section 3), rather than after the 5-minute stale limit.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from drills.common import (
    TCP,
    DrillResult,
    OrderLoad,
    ResultLoad,
    accessions_of,
    fresh_database,
    orders_stored,
    rows,
)
from lab.hl7.dispatcher import CLAIM_LOCKS
from testkit.api import ApiClient
from testkit.process import running_lab
from testkit.record import FakeRecord

_QUEUED = (
    "SELECT m.control_id FROM hl7_message m JOIN lab_order o ON o.id = m.order_id "
    "WHERE m.direction = 'out' AND o.placer_order_number = ANY(:p)"
)


# The ORUs a node's dispatcher has claimed and not finished: its claim number is the advisory
# lock held by the session it names after its process (what an operator would ask too).
_HELD_BY = f"""
    SELECT m.control_id FROM hl7_message m
    WHERE m.status = 'sent' AND m.claimed_by IN (
      SELECT l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.classid = {CLAIM_LOCKS} AND l.objsubid = 2
        AND a.datname = current_database() AND a.application_name LIKE :who)
"""  # noqa: S608 (our own constant)
_STATUS_OF = "SELECT control_id, status FROM hl7_message WHERE control_id = ANY(:ids)"
SLOW_ACK = 2.0


async def _send_with_failover(
    orders: OrderLoad, ports: tuple[int, int], placers: list[str]
) -> None:
    """To node A while it answers, then what is left (unacknowledged) to node B."""
    first, second = ports
    await orders.send(first, placers)
    await orders.send(second, placers, retry_for=120)


async def _drill(url: str, folder: Path, *, verified: int, streaming: int) -> DrillResult:
    orders = OrderLoad(label=f"N{int(time.time()) % 100000}")
    results = ResultLoad()
    slow = [True]
    record = FakeRecord(lambda _c, _a: "slow" if slow[0] else "AA", slow_seconds=SLOW_ACK)
    record_port = await record.start()
    await record.stop()  # down while results are verified: their ORUs wait in the outbox
    env = {"LAB_EHR_MLLP_URL": f"mllp://127.0.0.1:{record_port}", "LAB_RELEASE_HOLD_MINUTES": "0"}
    async with (
        running_lab(url, folder / "a", analysers=[TCP], extra_env=env) as node_a,
        running_lab(url, folder / "b", analysers=[], extra_env=env) as node_b,
    ):
        first = orders.make(verified)
        await orders.send(node_a.mllp_port, first)
        by_placer = accessions_of(url, first)
        await results.send(node_a.astm_port, list(by_placer.values()))
        lege = ApiClient(node_b.base, node_b.token("lege"))
        for accession in by_placer.values():
            await asyncio.to_thread(lege.verify_specimen, accession)
        waiting = {str(c) for (c,) in rows(url, _QUEUED, p=first)}

        more = orders.make(streaming)
        loading = asyncio.create_task(
            _send_with_failover(orders, (node_a.mllp_port, node_b.mllp_port), more)
        )
        await asyncio.sleep(2.0)
        await record.start(record_port)  # back, but slow: the dispatchers hold what they send
        process = node_a.process.process
        who = f"% pid {process.pid if process is not None else 0}"
        held: set[str] = set()
        claim_deadline = time.monotonic() + 60
        while not held and time.monotonic() < claim_deadline:
            await asyncio.sleep(0.1)
            held = {str(c) for (c,) in await asyncio.to_thread(rows, url, _HELD_BY, who=who)}
        before = len(orders.acked)
        await asyncio.to_thread(node_a.process.kill)
        killed_at = time.monotonic()
        slow[0] = False
        deadline = killed_at + 120
        taken_after = None
        while time.monotonic() < deadline and (
            (held and taken_after is None) or not waiting <= set(record.filed)
        ):
            await asyncio.sleep(0.1)
            if taken_after is None and held:
                found = await asyncio.to_thread(rows, url, _STATUS_OF, ids=list(held))
                if {status for _, status in found} == {"acknowledged"}:
                    taken_after = time.monotonic() - killed_at
        delivered_after = time.monotonic() - killed_at
        await asyncio.wait_for(loading, 180)
        health = await asyncio.to_thread(node_b.process.wait_healthy, 10)
        b_alive = node_b.process.running
    await record.stop()

    problems: list[str] = []
    placers = first + more
    stored = orders_stored(url, placers)
    if len(stored) != len(placers) or any(n != 1 for n in stored.values()):
        problems.append(f"orders stored: {len(stored)}/{len(placers)}, some twice or missing")
    if set(orders.acked.values()) != {"AA"} or len(orders.acked) != len(placers):
        problems.append(f"{len(orders.acked)} of {len(placers)} acknowledged")
    if not waiting:
        problems.append("no ORU was waiting when node A was killed: nothing was taken over")
    if not held:
        problems.append("node A held no claimed ORU when it was killed: nothing to take over")
    elif taken_after is None:
        problems.append(f"what node A had claimed ({len(held)} ORU) was not taken over in 120 s")
    missing = waiting - set(record.filed)
    if missing:
        problems.append(f"{len(missing)} of {len(waiting)} waiting ORUs never arrived")
    if health.get("status") != "ok" or not b_alive:
        problems.append(f"node B not healthy: {health.get('status')}")
    repeats = sum(1 for m in record.received if m.control_id in waiting) - len(waiting)
    taken = (
        f"acknowledged {taken_after:.1f} s after the kill"
        if taken_after is not None
        else "NOT acknowledged 120 s after the kill"
    )
    summary = (
        f"node A SIGKILLed with {before} orders acknowledged, {len(waiting)} ORUs waiting and "
        f"{len(held)} of them claimed by its dispatcher: node B took those over and had them "
        f"{taken} (the record answered slowly, "
        f"{SLOW_ACK:.0f} s an ACK, until the kill), took the rest of the orders "
        f"({len(stored)}/{len(placers)} stored once each) and delivered every waiting ORU "
        f"{delivered_after:.1f} s after the kill (the dispatchers' backoff from the record's "
        f"outage is in that time) ({max(0, repeats)} delivered twice, filed once by the record)"
    )
    return DrillResult.judged("node-loss", summary, problems)


def run(folder: Path, *, verified: int = 40, streaming: int = 400) -> DrillResult:
    with fresh_database("nodes") as url:
        return asyncio.run(_drill(url, folder, verified=verified, streaming=streaming))
