"""Web benchmark: server time of the overview, the review queue, a worklist and a patient's
cumulative report with a million results and 100,000 open specimens in the database (issue:
p95 under 200 ms each), and of a verification answered with its partial update (the tube's
block of the review page; issue: p95 under 100 ms). The machine's load (`uptime`) is printed
with the figures: they mean little on a machine busy with other work.

Pages are requested through the real app (routing, sign-in cookie, audit of reads, Jinja2
rendering) with Starlette's in-process client, so the time is the server's, without a network.
Scale with BENCH_SCALE (1 = the issue's sizes).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text

from bench import SCALE, bench_database
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences, settle
from lab.config import Settings
from lab.db import make_engine, make_session_factory
from lab.deps import SESSION_COOKIE
from lab.main import create_app
from lab.users import service as users
from testkit.database import PASSWORD

ALL_TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"]
RUNS = 40


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def main() -> None:
    with bench_database("web") as url:
        run(url)


def run(url: str) -> None:
    results = int(1_000_000 * SCALE)
    open_specimens = int(100_000 * SCALE)
    engine = make_engine(url, pool_size=4)
    started = time.perf_counter()
    with engine.begin() as connection:
        bulk_patients(connection, max(1000, results // 20))
        done_orders = results // len(ALL_TESTS)
        bulk_orders(
            connection,
            first=1,
            count=done_orders,
            patients=results // 20,
            tests=ALL_TESTS,
            resulted=True,
            review_share=0.01,
        )
        # Two tubes per order (EDTA and serum); the tubes of every other order not yet received.
        bulk_orders(
            connection,
            first=done_orders + 1,
            count=open_specimens // 2,
            patients=results // 20,
            tests=ALL_TESTS,
            resulted=False,
        )
        connection.execute(
            text(
                "UPDATE specimen SET status = 'expected', received_at = NULL WHERE status = "
                "'received' AND order_id % 2 = 0"
            )
        )
        fix_sequences(connection)
        counts = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM result), "
                "(SELECT count(*) FROM result WHERE status = 'awaiting_review'), "
                "(SELECT count(*) FROM specimen WHERE status IN "
                "('expected', 'collected', 'received', 'in_progress'))"
            )
        ).one()
    settle(engine)
    print(
        f"seeded {counts[0]:,} results ({counts[1]:,} awaiting review) and {counts[2]:,} open "
        f"specimens in {time.perf_counter() - started:.0f} s"
    )
    factory = make_session_factory(engine)
    with factory() as session:
        signed = users.sign_in(
            session,
            username="lege",
            password=PASSWORD,
            timeout=timedelta(hours=1),
            max_failures=5,
            lockout=timedelta(minutes=1),
        )
        session.commit()
    app = create_app(Settings(database_url=url), engine=engine, session_factory=factory)
    with engine.connect() as connection:
        # The patient with the most results, for the cumulative report of three tests.
        patient = connection.execute(
            text("SELECT patient_id FROM result GROUP BY patient_id ORDER BY count(*) DESC LIMIT 1")
        ).scalar_one()
        # Results awaiting review without a critical flag: each is verified once below.
        waiting = list(
            connection.execute(
                text(
                    "SELECT id FROM result WHERE status = 'awaiting_review' "
                    "AND NOT ('LL' = ANY (flags) OR 'HH' = ANY (flags)) ORDER BY id LIMIT :n"
                ),
                {"n": RUNS + 3},
            ).scalars()
        )
    pages = {
        "overview  (/)": "/",
        "review queue (/review)": "/review",
        "worklist, chemistry (/worklist?bench=SERUM)": "/worklist?bench=SERUM",
        "cumulative NA,K,KREA (PDF)": f"/patients/{patient}/cumulative.pdf?test=NA,K,KREA",
    }
    print(f"load: {_uptime()}")
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, signed.session_key)
        for label, path in pages.items():
            samples, cpu = [], []
            for _ in range(RUNS + 3):
                begun, used = time.perf_counter(), time.process_time()
                response = client.get(path)
                samples.append((time.perf_counter() - begun) * 1000)
                cpu.append((time.process_time() - used) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
            # The first requests warm caches.
            _report(label, samples[3:], cpu[3:], 200, len(response.content))
        samples, cpu = [], []
        for result_id in waiting:
            begun, used = time.perf_counter(), time.process_time()
            response = client.post(
                f"/results/{result_id}/verify",
                data={"csrf_token": signed.csrf_token},
                headers={"X-Lab-Partial": "review"},
            )
            samples.append((time.perf_counter() - begun) * 1000)
            cpu.append((time.process_time() - used) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"verify {result_id} answered {response.status_code}")
        _report("verify + partial update (POST)", samples[3:], cpu[3:], 100, len(response.content))
    print(f"load: {_uptime()}")
    engine.dispose()


def _report(label: str, samples: list[float], cpu: list[float], aim: int, size: int) -> None:
    """Wall time p50 and p95, and the process's CPU time p50 (the app and the in-process
    client: less disturbed by other work on the machine than the wall time)."""
    print(
        f"{label:45s} p50 {statistics.median(samples):6.1f} ms  "
        f"p95 {p95(samples):6.1f} ms  cpu p50 {statistics.median(cpu):5.1f} ms  "
        f"(aim: p95 < {aim} ms; {size:,} bytes)",
        flush=True,
    )


def _uptime() -> str:
    """The machine's load averages, as `uptime` prints them (1, 5, 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"
