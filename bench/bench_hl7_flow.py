"""HL7 flow end to end on the machine's PostgreSQL: orders in over MLLP, results out.

A fresh database is made, migrated (lab.migrate.upgrade), seeded (lab.demo.seed) and dropped
afterwards. The listener runs in a child process (as in production, apart from the senders);
`BENCH_SCALE` (default 1) shrinks every size for a quick run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session

from bench import bench_database, scaled
from lab.db import make_engine, make_session_factory
from lab.hl7.codec.ack import AckCode, build_ack
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.oru import build_oru
from lab.hl7.dispatcher import DeliveryPolicy, Dispatcher, Endpoint, MllpClient
from lab.hl7.inbox import Inbox
from lab.hl7.listener import Hl7Listener
from lab.tables import Hl7Message
from testkit.mllp import MllpConnection, ack_code
from testkit.orders import oml_o21
from testkit.patients import SyntheticPatient, national_number
from testkit.record import FakeRecord
from testkit.results import ten_results

OSLO_WINTER = timezone(timedelta(hours=1))
SENT = datetime(2026, 11, 27, 8, 15, 2, tzinfo=OSLO_WINTER)
COLLECTED = datetime(2026, 11, 27, 8, 0, tzinfo=OSLO_WINTER)


def order_message(n: int, run: str) -> bytes:
    """Order `n` of a run: haemoglobin for one of many patients (fixed times: same bytes)."""
    born = date(1930 + n % 70, 1 + n % 12, 1 + n % 28)
    patient = SyntheticPatient(fnr=national_number(born, n % 400), family="Østbø", given="Kari")
    return oml_o21(
        control_id=f"{run}{n}",
        placer=f"{run}{n}",
        patient=patient,
        tests=["HB"],
        location=None,
        sent_at=SENT,
        collected_at=COLLECTED,
    )


# --- the listener in its own process -------------------------------------------------------


def _serve(url: str, ready: Any, stop: Any) -> None:
    async def main() -> None:
        engine = make_engine(url, pool_size=8)
        listener = Hl7Listener(Inbox(make_session_factory(engine)), host="127.0.0.1", port=0)
        await listener.start()
        ready.put(listener.bound_port)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await listener.stop()
        engine.dispose()

    asyncio.run(main())


async def _send(port: int, messages: list[bytes], pace: float = 0.0) -> list[float]:
    connection = await MllpConnection.open("127.0.0.1", port)
    latencies = []
    try:
        for message in messages:
            started = time.perf_counter()
            ack = await connection.exchange(message)
            if ack_code(ack) != "AA":
                raise RuntimeError(f"not accepted: {ack!r}")
            latencies.append(time.perf_counter() - started)
            if pace:
                await asyncio.sleep(max(pace - latencies[-1], 0))
    finally:
        await connection.close()
    return latencies


def _connections(
    port: int, batches: list[list[bytes]], pace: float = 0.0
) -> tuple[float, list[float]]:
    async def main() -> list[list[float]]:
        return await asyncio.gather(*(_send(port, batch, pace) for batch in batches))

    started = time.perf_counter()
    latencies = asyncio.run(main())
    return time.perf_counter() - started, [x for batch in latencies for x in batch]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] * 1000


def ceiling(url: str, messages: list[bytes]) -> float:
    """Parse + insert the raw message + build the ACK, one commit each, no sockets, no rules."""
    engine = make_engine(url, pool_size=1)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with Session(engine) as session:
        for raw in messages:
            message = parse_message(raw)
            session.execute(
                insert(Hl7Message).values(
                    direction="in",
                    status="processed",
                    partner="",
                    raw=raw,
                    error="",
                    sending_application="CEIL",
                    sending_facility="",
                    attempts=0,
                    control_id=message.control_id,
                    message_type="OML^O21",
                    charset="UNICODE UTF-8",
                )
            )
            build_ack(message, code=AckCode.APPLICATION_ACCEPT, control_id="1", now=now).encode()
            session.commit()
    engine.dispose()
    return len(messages) / (time.perf_counter() - started)


def cost_per_message(url: str, messages: list[bytes]) -> dict[str, float]:
    """What one order costs the intake, in process (no sockets): SQL statements and commits
    per message (counted by engine events), client CPU ms (process time) and wall ms."""
    engine = make_engine(url, pool_size=1)
    counts = {"statements": 0, "commits": 0}

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    inbox = Inbox(make_session_factory(engine))
    for raw in messages[:5]:  # warm up: connection, prepared statements, catalog caches
        _intake(inbox, raw)
    counts.update(statements=0, commits=0)
    rest = messages[5:]
    cpu, wall = time.process_time(), time.perf_counter()
    for raw in rest:
        _intake(inbox, raw)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    engine.dispose()
    n = len(rest)
    return {
        "statements": counts["statements"] / n,
        "commits": counts["commits"] / n,
        "cpu_ms": cpu * 1000 / n,
        "wall_ms": wall * 1000 / n,
    }


def _intake(inbox: Inbox, raw: bytes) -> None:
    """What the listener does with one message (lab.hl7.listener._answer), without a socket."""
    stored = inbox.store(raw)
    acks = list(stored.acks)
    if stored.pending is not None:
        acks += inbox.process(stored.message_id, stored.pending)
    if not acks or ack_code(acks[-1]) != "AA":
        raise RuntimeError(f"not accepted: {acks!r}")


# --- the outbound side ----------------------------------------------------------------------


def queue_results(url: str, count: int, patients: int) -> None:
    """`count` queued ORU rows (a 10-OBX result report each) by INSERT ... SELECT."""
    raw = build_oru(ten_results()).encode().replace(b"LAB-000001", b"LAB-CONTROLID")
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(
            text(
                """
                INSERT INTO hl7_message (direction, status, partner, sending_application,
                  sending_facility, control_id, message_type, raw, charset, error, patient_id,
                  attempts, next_attempt_at)
                SELECT 'out', 'queued', '', 'LAB', '', 'B' || n, 'ORU^R01',
                  convert_to(replace(:raw, 'LAB-CONTROLID', 'B' || n), 'UTF8'), 'UNICODE UTF-8', '',
                  n % :patients,
                  0, now() - interval '1 second'
                FROM generate_series(1, :count) AS n
                """
            ),
            {"raw": raw.decode(), "count": count, "patients": patients},
        )
    engine.dispose()


def drain(url: str) -> tuple[float, int]:
    async def main() -> int:
        record = FakeRecord(keep=False)
        port = await record.start()
        engine = make_engine(url, pool_size=2)
        policy = DeliveryPolicy(batch_size=500)
        dispatcher = Dispatcher(
            make_session_factory(engine),
            MllpClient(Endpoint(host="127.0.0.1", port=port), policy=policy),
            policy=policy,
        )
        while await dispatcher.drain(budget=3600):
            pass
        await dispatcher.close()
        await record.stop()
        engine.dispose()
        return record.count

    started = time.perf_counter()
    delivered = asyncio.run(main())
    return time.perf_counter() - started, delivered


def main() -> None:
    with bench_database("hl7") as url:
        run = uuid.uuid4().hex[:6]
        n = scaled(2000, 40)
        messages = [order_message(i, run) for i in range(n)]
        limit = ceiling(url, [order_message(i, run + "c") for i in range(n)])
        print(
            f"ceiling      {limit:8.0f} msg/s  parse + insert raw + ACK, one commit each, no rules"
        )
        cost = cost_per_message(url, [order_message(i, run + "k") for i in range(scaled(300, 20))])
        print(
            f"per order    {cost['statements']:.1f} statements, {cost['commits']:.1f} commits, "
            f"{cost['cpu_ms']:.1f} ms CPU, {cost['wall_ms']:.1f} ms wall  "
            "(in process, no socket: store + process + ACK of one OML^O21)"
        )

        spawn = multiprocessing.get_context("spawn")
        ready: Any = spawn.Queue()
        stop: Any = spawn.Event()
        child = spawn.Process(target=_serve, args=(url, ready, stop))
        child.start()
        port = ready.get(timeout=60)
        try:
            half = n // 2
            took, lat1 = _connections(port, [messages[:half]])
            print(
                f"1 connection {half / took:8.0f} orders/s  committed and ACKed "
                f"(p50 {_percentile(lat1, 0.5):.1f} ms, p99 {_percentile(lat1, 0.99):.1f} ms)"
            )
            rest = messages[half:]
            took, lat4 = _connections(port, [rest[i::4] for i in range(4)])
            print(
                f"4 connections{len(rest) / took:8.0f} orders/s  committed and ACKed "
                f"(p50 {_percentile(lat4, 0.5):.1f} ms, p99 {_percentile(lat4, 0.99):.1f} ms)"
            )
            paced = [order_message(i, run + "p") for i in range(scaled(600, 30))]
            _, latp = _connections(port, [paced], pace=1 / 30)
            print(
                f"paced 30/s   p50 {_percentile(latp, 0.5):.1f} ms, "
                f"p99 {_percentile(latp, 0.99):.1f} ms  "
                "ACK latency at a steady record's pace (aim: p99 < 50 ms)"
            )
        finally:
            stop.set()
            child.join(30)

        small = scaled(5000, 50)
        queue_results(url, small, max(small // 3, 1))
        took, delivered = drain(url)
        print(
            f"outbound     {delivered / took:8.0f} results/s  "
            f"ORU^R01 delivered and AA'd ({delivered})"
        )

        backlog = scaled(100_000, 100)
        queue_results(url, backlog, max(backlog // 5, 1))
        took, delivered = drain(url)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"backlog      {delivered} queued results drained in {took:.1f} s "
            f"({delivered / took:.0f}/s), peak RSS {rss:.0f} MB (aims: < 10 min, < 500 MB)"
        )
