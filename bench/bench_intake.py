"""Intake measured from outside, as the record and the analysers see it, with 1 intake process
and with `LAB_WORKERS` at its default (one per core), beside the naive loop in the same run.

A real `lab serve` (its own fresh database on the machine's PostgreSQL, made here and dropped at
the end) with four analysers configured as TCP servers. Ordinary clients:
- orders: 4 MLLP connections sending IHE LTW OML^O21 with five ORC/OBR pairs each (NA, K, KREA,
  CRP, GLUK: one serum tube), as fast as the ACKs come back; counted when ACKed AA;
- ACK latency: 1 connection paced at 30 orders/s; p50/p99 from send to ACK;
- results: 4 virtual analysers over TCP, each sending H, P, O, five R, L per specimen (commit
  before the ACK), for tubes placed by the orders above and received.
The naive loop is a bare asyncio MLLP server in its own process that parses each message,
inserts it with one commit and answers an ACK: the ceiling of "MLLP + parse + insert + ACK".
`BENCH_SCALE` (default 1) shrinks the counts for a quick run.

Before and after each measured phase the database is vacuumed and analyzed (`VACUUM ANALYZE`),
what PostgreSQL's autovacuum does in production as the tables grow; the development machine's
server runs with `autovacuum = off`, and without it the planner has no statistics and every
pooled connection keeps the plans it made while the tables were small (sequential scans of
`result` and `ordered_test` on every analyser message, whose cost grows with the data:
docs/capacity.md). The vacuum's own CPU after a phase is printed per message beside the phase's
figures (it is not in them). `BENCH_INTAKE_VACUUM=0` leaves it out, to see the difference.

Figures a busy machine disturbs less are printed beside the rates (`bench/intake_cost.py`): the
SQL statements, commits and CPU ms of one order and of one analyser message run in this process
without sockets, and the CPU that the outside runs cost the `lab serve` processes and the
database's PostgreSQL backends, per order and per analyser message, read from /proc, beside
the CPU of this process's clients (the MLLP senders and virtual analysers), of the rest of the
machine and the cores' idle time: where the cores went.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bench import bench_database, scaled
from bench.intake_cost import (
    Cost,
    CpuMeter,
    CpuSplit,
    analyser_cost,
    autovacuum_setting,
    order_cost,
    receive_tubes,
    settle,
)
from instruments.profiles import get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.audit import Actor
from lab.db import make_engine
from lab.hl7.codec.ack import AckCode, build_ack
from lab.hl7.codec.er7 import parse_message
from lab.hl7.codec.mllp import MllpDecoder, frame
from lab.tables import Hl7Message
from testkit.mllp import ack_code
from testkit.orders import oml_o21
from testkit.patients import synthetic_patients
from testkit.process import LabProcess, free_port

TESTS = ["NA", "K", "KREA", "CRP", "GLUK"]
CONNECTIONS = 4
ANALYSERS = 4
ACTOR = Actor(user_id=None, username="bench", roles=frozenset({"technician"}), channel="cli")
#: VACUUM ANALYZE around each measured phase, as autovacuum would (module docstring).
VACUUM = os.environ.get("BENCH_INTAKE_VACUUM", "1") != "0"


def as_autovacuum_would(url: str) -> float:
    """CPU seconds of a VACUUM ANALYZE of the bench's database (0 without `VACUUM`)."""
    return settle(url) if VACUUM else 0.0


def orders(label: str, count: int) -> list[bytes]:
    patients = synthetic_patients(count, seed=abs(hash(label)) % 100_000)
    return [
        oml_o21(control_id=f"{label}{n}", placer=f"{label}{n}", patient=p, tests=TESTS)
        for n, p in enumerate(patients)
    ]


async def _one_connection(
    port: int, messages: list[bytes], *, pace: float = 0.0
) -> tuple[int, list[float]]:
    """Send on one connection, each after the previous ACK (and `pace` s apart at least)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = MllpDecoder()
    accepted, latencies = 0, []
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        for message in messages:
            if pace:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at += pace
            sent = time.perf_counter()
            writer.write(frame(message))
            await writer.drain()
            while not isinstance(block := decoder.next_message(), bytes):
                chunk = await asyncio.wait_for(reader.read(65536), 60)
                if not chunk:
                    raise ConnectionError("closed before the ACK")
                decoder.receive_data(chunk)
            latencies.append(time.perf_counter() - sent)
            accepted += ack_code(block) == "AA"
    finally:
        writer.close()
    return accepted, latencies


def send_orders(port: int, messages: list[bytes], connections: int) -> tuple[float, int]:
    async def main() -> list[tuple[int, list[float]]]:
        parts = [messages[i::connections] for i in range(connections)]
        return await asyncio.gather(*(_one_connection(port, part) for part in parts))

    started = time.perf_counter()
    done = asyncio.run(main())
    elapsed = time.perf_counter() - started
    accepted = sum(a for a, _ in done)
    return accepted / elapsed, accepted


def paced_latency(port: int, messages: list[bytes], rate: float) -> tuple[float, float]:
    _accepted, latencies = asyncio.run(_one_connection(port, messages, pace=1 / rate))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000


def send_results(ports: list[int], accessions: list[str]) -> tuple[float, int]:
    async def one(number: int, port: int, tubes: list[str]) -> int:
        analyser = VirtualAnalyser(
            profile=get_profile("generic"), name=f"SIM-{number}", rng=random.Random(number)
        )
        channel = await tcp.open_channel("127.0.0.1", port)
        runs = await analyser.run(channel, tubes, query=False, tests=TESTS)
        return sum(len(run.sent) for run in runs if run.outcome == "accepted")

    async def main() -> list[int]:
        shares = [accessions[i :: len(ports)] for i in range(len(ports))]
        pairs = enumerate(zip(ports, shares, strict=True))
        return await asyncio.gather(*(one(n, port, share) for n, (port, share) in pairs))

    started = time.perf_counter()
    sent = asyncio.run(main())
    elapsed = time.perf_counter() - started
    return sum(sent) / elapsed, sum(sent)


def _instruments_file(folder: Path, ports: list[int]) -> Path:
    path = folder / "instruments.toml"
    path.write_text(
        "".join(
            f'[[instrument]]\nname = "an{n}"\nprofile = "generic"\nlocal_codes = true\n'
            f'[instrument.tcp]\nmode = "server"\nhost = "127.0.0.1"\nport = {port}\n'
            for n, port in enumerate(ports)
        )
    )
    return path


def measure_lab(url: str, workers: int, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    mllp, ports = free_port(), [free_port() for _ in range(ANALYSERS)]
    lab = LabProcess(
        env={
            "LAB_DATABASE_URL": url,
            "LAB_DATA_DIR": str(folder / "var"),
            "LAB_MLLP_PORT": str(mllp),
            "LAB_WORKERS": str(workers),
            "LAB_INSTRUMENTS_FILE": str(_instruments_file(folder, ports)),
        },
        http_port=free_port(),
        log_path=folder / "lab-serve.log",
    )
    label = f"W{workers}X{secrets.token_hex(2).upper()}"
    lab.start(wait=180)
    assert lab.process is not None
    meter = CpuMeter(url, lab.process.pid)
    try:
        send_orders(mllp, orders(label + "WARM", 20), CONNECTIONS)  # connections, caches
        as_autovacuum_would(url)
        start = meter.reading()
        rate, accepted = send_orders(mllp, orders(label, scaled(1200, 40)), CONNECTIONS)
        order_cpu = meter.since(start)
        order_vacuum = as_autovacuum_would(url)
        p50, p99 = paced_latency(mllp, orders(label + "P", scaled(300, 30)), 30.0)
        tubes = receive_tubes(url, label, ACTOR)
        as_autovacuum_would(url)
        start = meter.reading()
        results_rate, results = send_results(ports, tubes)
        result_cpu = meter.since(start)
        result_vacuum = as_autovacuum_would(url)
    finally:
        lab.stop()
        meter.close()
    return {
        "orders_per_s": rate,
        "orders": accepted,
        "ack_p50_ms": p50,
        "ack_p99_ms": p99,
        "results_per_s": results_rate,
        "results": results,
        # Where the cores went, in ms per order and per analyser message (5 results).
        "order_cpu": order_cpu.per_message(accepted),
        "message_cpu": result_cpu.per_message(results / len(TESTS)),
        # The VACUUM ANALYZE right after the phase, ms per order / per message.
        "order_vacuum_ms": order_vacuum * 1000 / max(1, accepted),
        "message_vacuum_ms": result_vacuum * 1000 / max(1.0, results / len(TESTS)),
    }


# --- the naive loop ---------------------------------------------------------------------------


def _naive_server(url: str, port: int, ready: Any) -> None:
    engine = make_engine(url, pool_size=CONNECTIONS)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder()
        while chunk := await reader.read(65536):
            decoder.receive_data(chunk)
            while isinstance(raw := decoder.next_message(), bytes):
                message = parse_message(raw)
                with Session(engine) as session:
                    session.execute(
                        insert(Hl7Message).values(
                            direction="in",
                            status="processed",
                            partner="",
                            raw=raw,
                            error="",
                            sending_application="NAIVE",
                            sending_facility="",
                            attempts=0,
                            control_id=message.control_id,
                            message_type="OML^O21",
                            charset="UNICODE UTF-8",
                        )
                    )
                    session.commit()
                ack = build_ack(
                    message,
                    code=AckCode.APPLICATION_ACCEPT,
                    control_id=secrets.token_hex(4),
                    now=datetime.now(UTC),
                )
                writer.write(frame(ack.encode()))
                await writer.drain()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def naive_loop(url: str) -> tuple[float, CpuSplit]:
    """Messages per second, and where the cores went per message (ms)."""
    port = free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_naive_server, args=(url, port, ready), daemon=True)
    child.start()
    meter = CpuMeter(url, child.pid)
    try:
        ready.wait(60)
        send_orders(port, orders("NAIVEWARM", 20), CONNECTIONS)
        start = meter.reading()
        rate, sent = send_orders(port, orders("NAIVE", scaled(1200, 40)), CONNECTIONS)
        cpu = meter.since(start)
    finally:
        child.terminate()
        child.join(10)
        meter.close()
    return rate, cpu.per_message(sent)


def in_process(url: str) -> tuple[Cost, Cost]:
    """One order and one analyser message, each alone in this process (no sockets)."""
    order = order_cost(url, orders("COST", scaled(300, 60)))
    as_autovacuum_would(url)
    message = analyser_cost(url, "COST", TESTS, ACTOR)
    return order, message


def main() -> None:
    default = max(1, len(os.sched_getaffinity(0)))
    counts = sorted({1, default})
    with bench_database("intake") as url, tempfile.TemporaryDirectory() as folder:
        print(f"load average at the start: {_load()}")
        print(
            f"the server's autovacuum: {autovacuum_setting(url)}; "
            + (
                "VACUUM ANALYZE before and after each measured phase, as autovacuum would do "
                "in production (its CPU after a phase is given beside the phase, not in it)"
                if VACUUM
                else "BENCH_INTAKE_VACUUM=0: never vacuumed nor analyzed (no statistics; "
                "the plans each connection made while the tables were small are kept)"
            ),
            flush=True,
        )
        order, message = in_process(url)
        print(
            "in process, no sockets (the intake's own cost):\n"
            f"  one order (OML^O21, 5 ORC/OBR pairs, new patient): {order.line()}\n"
            f"  one analyser message (H, P, O, 5 R, L): {message.line()}",
            flush=True,
        )
        ceiling, naive_cpu = naive_loop(url)
        print(
            f"naive loop (MLLP + parse + insert + ACK, 1 process, {CONNECTIONS} connections): "
            f"{ceiling:.0f} messages/s; CPU per message: {naive_cpu.lab:.1f} ms in its process, "
            f"{naive_cpu.postgres:.1f} ms in PostgreSQL, {naive_cpu.clients:.1f} ms in the "
            "clients",
            flush=True,
        )
        for workers in counts:
            figures = measure_lab(url, workers, Path(folder) / f"w{workers}")
            print(
                f"lab serve, LAB_WORKERS={workers} (load average {_load()}):\n"
                f"  orders ACKed over {CONNECTIONS} connections: {figures['orders_per_s']:.0f}/s "
                f"({figures['orders']} orders of 5 ORC/OBR pairs; "
                f"{figures['orders_per_s'] / ceiling:.0%} of the naive loop; aim >= 300/s "
                "and >= 50 %)\n"
                f"    the cores per order: {figures['order_cpu'].line()}"
                f"{_vacuum_note(figures['order_vacuum_ms'])}\n"
                f"  ACK at 30 orders/s on 1 connection: p50 {figures['ack_p50_ms']:.1f} ms, "
                f"p99 {figures['ack_p99_ms']:.1f} ms (aim p99 < 50 ms)\n"
                f"  results committed from {ANALYSERS} analysers: "
                f"{figures['results_per_s']:.0f}/s ({figures['results']} results; aim >= 1,000/s)"
                f"\n    the cores per message of 5 results: {figures['message_cpu'].line()}"
                f"{_vacuum_note(figures['message_vacuum_ms'])}",
                flush=True,
            )
    print(f"load average at the end: {_load()}")
    print(
        "The figures are what outside clients see: parse, validation, order placement, audit, "
        "commit and ACK. With one process the intake uses one core; the machine has "
        f"{default} core(s), shared with PostgreSQL and the clients of this benchmark."
    )


def _vacuum_note(ms: float) -> str:
    return f"; + {ms:.2f} ms VACUUM ANALYZE after the phase" if VACUUM else ""


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
