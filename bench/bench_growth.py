"""Growth benchmark: what recording a result and the review page cost with 1 k, 10 k, 100 k and
1 M results already stored (issue: cost per message must stay flat as the database grows).

One database grows step by step (bulk rows as in `core_seed`: twenty results per patient, 1 %
awaiting review). At each size the same work is timed in the same way:
- recording: `results.record_tube` for a batch of fresh tubes, one transaction per tube, judged by
  the demo autoverification rule set: every other tube released (queued for the record, as in
  production), the others held for review so the queue always holds more than a page;
  milliseconds per result, statements per tube, and the tube's p95;
- the review page through the real app (sign-in cookie, audited read, Jinja2), p50 and p95, and
  the PostgreSQL time of its statements (EXPLAIN ANALYZE of each, summed): the share that a
  busy machine disturbs least.
`BENCH_SCALE` scales the sizes (0.01: 10 to 10 k stored results, for a quick run).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from bench import SCALE, bench_database
from bench.bench_core import ANALYSER, VALUES, demo_ruleset, tubes_of
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences, settle
from lab.config import Settings
from lab.db import make_engine, make_session_factory
from lab.deps import SESSION_COOKIE
from lab.main import create_app
from lab.results import service as results
from lab.results.judging import ActiveRules
from lab.users import service as users
from testkit.database import PASSWORD

ALL_TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"]
SIZES = (1_000, 10_000, 100_000, 1_000_000)
TUBES = 120  # recorded at each size (about 480 results)
PAGE_RUNS = 30


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


class Statements:
    """Counts and keeps the statements an engine runs while `on`."""

    def __init__(self, engine: Engine) -> None:
        self.on = False
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _c: object, _cur: object, statement: str, params: Any, *_: object) -> None:
        if self.on:
            self.seen.append((statement, params))

    def during(self, work: Callable[[], object]) -> list[tuple[str, Any]]:
        self.seen, self.on = [], True
        try:
            work()
        finally:
            self.on = False
        return self.seen


def postgres_ms(engine: Engine, statements: list[tuple[str, Any]]) -> float:
    """Planning + execution time PostgreSQL reports for the SELECTs among `statements`."""
    total = 0.0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, params in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
            plan = cursor.fetchone()[0][0]  # type: ignore[index]
            total += plan["Planning Time"] + plan["Execution Time"]
        raw.rollback()
    finally:
        raw.close()
    return total


def main() -> None:
    sizes = [max(10, int(size * SCALE)) for size in SIZES]
    with bench_database("growth") as url:
        run(url, sizes=sizes)


def run(url: str, *, sizes: list[int]) -> None:
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    statements = Statements(engine)
    ruleset = demo_ruleset(factory)
    # Every other tube is judged with autoverification off, so its results wait for review and
    # the queue holds more than a page at every size; the others are released as in production.
    variants = [
        ActiveRules(autoverification=ruleset),
        ActiveRules(
            autoverification=replace(
                ruleset,
                tests=MappingProxyType(
                    {code: replace(r, autoverify=False) for code, r in ruleset.tests.items()}
                ),
            )
        ),
    ]
    with factory() as session:
        signed = users.sign_in(
            session,
            username="lege",
            password=PASSWORD,
            timeout=timedelta(hours=2),
            max_failures=5,
            lockout=timedelta(minutes=1),
        )
        session.commit()
    app = create_app(Settings(database_url=url), engine=engine, session_factory=factory)
    rng = random.Random(11)
    observed = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    next_order, patients = 1, 0
    print(
        f"{'stored results':>15s} | {'record ms/result':>16s} {'tube p95 ms':>11s} "
        f"{'stmts/tube':>10s} | {'review p50':>10s} {'p95 ms':>7s} {'PostgreSQL ms':>13s} | "
        "awaiting review"
    )
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, signed.session_key)
        for size in sizes:
            with engine.begin() as connection:
                stored = connection.execute(text("SELECT count(*) FROM result")).scalar_one()
                wanted_patients = max(50, size // 20)
                if wanted_patients > patients:
                    bulk_patients(connection, wanted_patients - patients, first=patients + 1)
                    patients = wanted_patients
                count = max(0, (size - stored) // len(ALL_TESTS))
                if count:
                    bulk_orders(
                        connection,
                        first=next_order,
                        count=count,
                        patients=patients,
                        tests=ALL_TESTS,
                        resulted=True,
                        review_share=0.01,
                    )
                    next_order += count
                pending_first = next_order
                pending = max(1, TUBES // 2)  # two tubes per order
                bulk_orders(
                    connection,
                    first=pending_first,
                    count=pending,
                    patients=patients,
                    tests=ALL_TESTS,
                    resulted=False,
                )
                next_order += pending
                fix_sequences(connection)
                stored = connection.execute(text("SELECT count(*) FROM result")).scalar_one()
            settle(engine)
            tubes = tubes_of(engine, pending_first, pending)
            per_tube: list[float] = []
            per_statements: list[int] = []
            recorded = 0
            for index, (accession, codes) in enumerate(tubes):
                measurements = [
                    results.Measurement(
                        accession_number=accession,
                        test_code=code,
                        value=f"{rng.uniform(*VALUES[code]):.1f}",
                        observed_at=observed,
                        instrument="bench-analyser",
                        instrument_flags="N",
                        flag_profile="generic",
                    )
                    for code in codes
                ]

                def record(
                    measurements: list[results.Measurement] = measurements,
                    rules: ActiveRules = variants[index % 2],
                ) -> None:
                    with factory() as session:
                        results.record_tube(
                            session, actor=ANALYSER, measurements=measurements, rules=rules
                        )
                        session.commit()

                started = time.perf_counter()
                per_statements.append(len(statements.during(record)))
                per_tube.append((time.perf_counter() - started) * 1000)
                recorded += len(measurements)
            page_ms = []
            for _ in range(PAGE_RUNS + 3):
                started = time.perf_counter()
                response = client.get("/review")
                page_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"/review answered {response.status_code}")
            page_ms = page_ms[3:]
            page_statements = statements.during(lambda: client.get("/review"))
            in_postgres = statistics.median(postgres_ms(engine, page_statements) for _ in range(5))
            with engine.connect() as connection:
                awaiting = connection.execute(
                    text("SELECT count(*) FROM result WHERE status = 'awaiting_review'")
                ).scalar_one()
            print(
                f"{stored:>15,} | {sum(per_tube) / recorded:>16.2f} {p95(per_tube):>11.1f} "
                f"{statistics.median(per_statements):>10.0f} | "
                f"{statistics.median(page_ms):>10.1f} {p95(page_ms):>7.1f} {in_postgres:>13.1f} | "
                f"{awaiting:,}",
                flush=True,
            )
    engine.dispose()
