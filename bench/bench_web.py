"""Web benchmark: server time of the overview, the review queue, a worklist and a patient's
cumulative results with a million results and 100,000 open specimens in the database (issue:
p95 under 200 ms each; the cumulative view of 10,000 results under 100 ms), and of a
verification answered with its partial update (the tube's block of the review page; issue: p95
under 100 ms).

Pages are requested through the real app (routing, sign-in cookie, audit of reads, Jinja2
rendering) with Starlette's in-process client, so the time is the server's, without a network.
Each page's line gives, beside the wall time, what a busy machine disturbs less: the statements
per request and their time (SQLAlchemy's cursor events: PostgreSQL's answer and its transfer),
the template's rendering time, the process's CPU time, and the one-minute load average when the
page was measured. Scale with BENCH_SCALE (1 = the issue's sizes).

`BENCH_WEB_ONLY=review,verify` measures only the pages whose label holds one of the words;
`BENCH_WEB_KEEP=1` keeps the seeded database (its URL is printed) and `BENCH_WEB_DATABASE=<url>`
measures one kept earlier without seeding again, for profiling a page (EXPLAIN) at full size.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

import lab.web.templating as templating
from bench import SCALE, SERVER
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences, settle
from lab.config import Settings
from lab.db import make_engine, make_session_factory
from lab.deps import SESSION_COOKIE
from lab.main import create_app
from lab.users import service as users
from testkit.database import PASSWORD, create_database, drop_database

ALL_TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"]
RUNS = 40
WARM = 3


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


@dataclass
class Meter:
    """Statements and their time, and template rendering time, since the last `reset`."""

    statements: int = 0
    sql_ms: float = 0.0
    template_ms: float = 0.0
    _started: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.statements, self.sql_ms, self.template_ms = 0, 0.0, 0.0


def main() -> None:
    kept = os.environ.get("BENCH_WEB_DATABASE")
    if kept:
        run(kept)
        return
    database = create_database(SERVER, "bench_web")
    try:
        seed(database.url)
        run(database.url)
    finally:
        if os.environ.get("BENCH_WEB_KEEP"):
            print(f"kept the database: BENCH_WEB_DATABASE={database.url}")
        else:
            drop_database(database)


def seed(url: str) -> None:
    results = int(1_000_000 * SCALE)
    open_specimens = int(100_000 * SCALE)
    # One patient with 10,000 sodium results: the cumulative view's worst case.
    heavy = min(10_000, results // 10)
    engine = make_engine(url, pool_size=1)
    started = time.perf_counter()
    with engine.begin() as connection:
        bulk_patients(connection, max(1000, results // 20))
        bulk_orders(connection, first=1, count=heavy, patients=1, tests=["NA"], resulted=True)
        done_orders = (results - heavy) // len(ALL_TESTS)
        bulk_orders(
            connection,
            first=heavy + 1,
            count=done_orders,
            patients=results // 20,
            tests=ALL_TESTS,
            resulted=True,
            review_share=0.01,
        )
        # Two tubes per order (EDTA and serum); the tubes of every other order not yet received.
        bulk_orders(
            connection,
            first=heavy + done_orders + 1,
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
    settle(engine)
    print(f"seeded in {time.perf_counter() - started:.0f} s")
    engine.dispose()


@contextmanager
def metered(engine: Engine) -> Iterator[Meter]:
    """Count and time the engine's statements and the pages' template rendering."""
    meter = Meter()

    def before(*_: Any) -> None:
        meter._started.append(time.perf_counter())

    def after(*_: Any) -> None:
        meter.statements += 1
        meter.sql_ms += (time.perf_counter() - meter._started.pop()) * 1000

    # Rendering runs between `page_context` (the template's context) and `_response` (the
    # rendered body made a response), for whole pages and partial blocks alike.
    page_context, respond = templating.page_context, templating._response
    rendering: list[float] = []

    def timed_context(*args: Any, **kwargs: Any) -> Any:
        made = page_context(*args, **kwargs)
        rendering.append(time.perf_counter())
        return made

    def timed_response(*args: Any, **kwargs: Any) -> Any:
        if rendering:
            meter.template_ms += (time.perf_counter() - rendering.pop()) * 1000
        return respond(*args, **kwargs)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    templating.page_context, templating._response = timed_context, timed_response  # type: ignore[assignment]
    try:
        yield meter
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        templating.page_context, templating._response = page_context, respond  # type: ignore[assignment]


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    template: list[float] = field(default_factory=list)
    size: int = 0

    def take(self, meter: Meter, request: Callable[[], Any]) -> Any:
        meter.reset()
        begun, used = time.perf_counter(), time.process_time()
        response = request()
        self.wall.append((time.perf_counter() - begun) * 1000)
        self.cpu.append((time.process_time() - used) * 1000)
        self.sql.append(meter.sql_ms)
        self.statements.append(meter.statements)
        self.template.append(meter.template_ms)
        self.size = len(response.content)
        return response


def run(url: str) -> None:
    engine = make_engine(url, pool_size=4)
    factory = make_session_factory(engine)
    with engine.connect() as connection:
        counts = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM result), "
                "(SELECT count(*) FROM result WHERE status = 'awaiting_review'), "
                "(SELECT count(*) FROM specimen WHERE status IN "
                "('expected', 'collected', 'received', 'in_progress'))"
            )
        ).one()
        # The patient with the most results (10,000 sodium results), for the cumulative view.
        patient, heavy = connection.execute(
            text(
                "SELECT patient_id, count(*) FROM result GROUP BY patient_id "
                "ORDER BY count(*) DESC LIMIT 1"
            )
        ).one()
        ordinary = connection.execute(
            text("SELECT patient_id FROM result WHERE patient_id <> :heavy LIMIT 1"),
            {"heavy": patient},
        ).scalar_one()
        # A page deep in the review queue: the sort key of the result half way down.
        middle = connection.execute(
            text(
                "SELECT urgency, recorded_at, id FROM result WHERE status = 'awaiting_review' "
                "ORDER BY urgency, recorded_at, id OFFSET :half LIMIT 1"
            ),
            {"half": counts[1] // 2},
        ).one()
        # Results awaiting review without a critical flag, each verified once below: first
        # results whose tube keeps another waiting result (the partial update redraws the
        # tube's block), then the last waiting result of a tube (the block goes away).
        waiting = {
            redraw: list(
                connection.execute(
                    text(
                        "SELECT r.id FROM result r WHERE r.status = 'awaiting_review' "
                        "AND NOT ('LL' = ANY (r.flags) OR 'HH' = ANY (r.flags)) "
                        f"AND {'' if redraw else 'NOT '}EXISTS (SELECT 1 FROM result o "
                        "WHERE o.specimen_id = r.specimen_id AND o.status = 'awaiting_review' "
                        "AND o.id > r.id) ORDER BY r.id LIMIT :n"
                    ),
                    {"n": RUNS + WARM},
                ).scalars()
            )
            for redraw in (True, False)
        }
    print(
        f"database: {counts[0]:,} results ({counts[1]:,} awaiting review), {counts[2]:,} open "
        f"specimens; the cumulative view's patient has {heavy:,} results"
    )
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
    deep = f"{middle[0]}~{middle[1].isoformat()}~{middle[2]}"
    pages = {
        "overview (/)": ("/", 200),
        "wall screen (/wall)": ("/wall", 200),
        "review queue (/review)": ("/review", 200),
        "review queue, half way down (?after=)": (f"/review?after={deep}", 200),
        "worklist, chemistry (/worklist?bench=SERUM)": ("/worklist?bench=SERUM", 200),
        "worklist, every bench (/worklist)": ("/worklist", 200),
        f"cumulative view NA, {heavy:,} results (page)": (
            f"/patients/{patient}/cumulative?test=NA",
            100,
        ),
        # The printed report of three tests of an ordinary patient (the whole history).
        "cumulative report NA,K,KREA (PDF)": (
            f"/patients/{ordinary}/cumulative.pdf?test=NA,K,KREA",
            0,
        ),
    }
    only = [word for word in os.environ.get("BENCH_WEB_ONLY", "").split(",") if word]
    if only:  # e.g. BENCH_WEB_ONLY=review,verify while working on those pages
        pages = {label: page for label, page in pages.items() if any(w in label for w in only)}
    print(f"load: {_uptime()}")
    print(
        f"{'page':46s} {'wall p50':>8s} {'p95':>7s} {'stmts':>5s} {'SQL p50':>7s} "
        f"{'tmpl p50':>8s} {'CPU p50':>7s} {'load1':>5s}  aim, size"
    )
    with TestClient(app) as client, metered(engine) as meter:
        client.cookies.set(SESSION_COOKIE, signed.session_key)
        for label, (path, aim) in pages.items():
            samples = Samples()
            for _ in range(RUNS + WARM):
                response = samples.take(meter, lambda path=path: client.get(path))  # type: ignore[misc]
                if response.status_code == 404 and not samples.wall[1:]:
                    break  # a page this version of the app does not have
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
            _report(label, samples, aim)
        for redraw, ids in waiting.items():
            if not only or "verify" in only:
                _verify_each(client, meter, signed.csrf_token, ids, redraw=redraw)
    print(f"load: {_uptime()}")
    engine.dispose()


def _verify_each(
    client: TestClient, meter: Meter, csrf: str, ids: list[int], *, redraw: bool
) -> None:
    """Verify each result through the review page's partial update and report the figures."""
    samples = Samples()
    for result_id in ids:
        response = samples.take(
            meter,
            lambda result_id=result_id: client.post(  # type: ignore[misc]
                f"/results/{result_id}/verify",
                data={"csrf_token": csrf},
                headers={"X-Lab-Partial": "review"},
            ),
        )
        if response.status_code != 200:
            raise RuntimeError(f"verify {result_id} answered {response.status_code}")
    if samples.wall:
        what = "tube redrawn" if redraw else "tube's last"
        _report(f"verify + partial update, {what} (POST)", samples, 100)


def _report(label: str, samples: Samples, aim: int) -> None:
    """The first requests warm caches and are left out. Statements are the median count (the
    first request of a page also reads what the app caches)."""
    if len(samples.wall) <= WARM:
        print(f"{label:46s} (no such page)")
        return
    wall, cpu = samples.wall[WARM:], samples.cpu[WARM:]
    sql, template = samples.sql[WARM:], samples.template[WARM:]
    statements = statistics.median(samples.statements[WARM:])
    wanted = f"p95 < {aim} ms" if aim else "no aim"
    print(
        f"{label:46s} {statistics.median(wall):6.1f}ms {p95(wall):5.1f}ms {statements:5.0f} "
        f"{statistics.median(sql):5.1f}ms {statistics.median(template):6.1f}ms "
        f"{statistics.median(cpu):5.1f}ms {os.getloadavg()[0]:5.2f}  "
        f"({wanted}; {samples.size:,} bytes)",
        flush=True,
    )


def _uptime() -> str:
    """The machine's load averages, as `uptime` prints them (1, 5, 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"
