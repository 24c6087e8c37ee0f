"""Judgement and replay: what a result's judgement costs, and a replay over stored results.

1. `judge()` alone (pure, in process) over the demo catalog and demo rule set v1: judgements/s.
2. `lab rules replay`'s core over a seeded history of BENCH_SCALE x 1,000,000 results (the core
   seeder's rows: every demo test, random values, one analyser, no flags), run twice: the time,
   results/s, and that the figures are the same both times. The issue's target is a million
   results in under 5 minutes on this machine.

The cost of the judgement inside the recording path (against recording without it) is measured
where the recording path calls it, in the results benchmarks.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from bench import bench_database, scaled
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences
from lab.db import make_engine
from lab.rules import JudgementContext, PreviousResult, ResultToJudge, judge
from lab.rulesets.replay import replay
from tests.rules.helpers import demo_catalog, demo_ruleset, years

TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"]


def bench_judge(count: int = 100_000) -> None:
    catalog, ruleset = demo_catalog(), demo_ruleset()
    rng = random.Random(7)
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    cases = []
    for _ in range(count):
        code = rng.choice(TESTS)
        value = Decimal(str(round(rng.uniform(1, 200), 1)))
        cases.append(
            (
                ResultToJudge(
                    test_code=code,
                    value=value,
                    measured_at=at,
                    instrument="bench",
                    flag_profile="generic",
                    instrument_flags=("N",),
                ),
                JudgementContext(
                    test=catalog[code],
                    age_days=years(rng.randint(0, 100)),
                    sex=rng.choice("FM"),
                    previous=PreviousResult(
                        value=value, comparator=None, measured_at=at - timedelta(hours=12)
                    ),
                ),
            )
        )
    started = time.perf_counter()
    released = sum(1 for subject, context in cases if judge(subject, context, ruleset).autoverify)
    took = time.perf_counter() - started
    print(
        f"judge(): {count} results in {took:.2f} s = {count / took:,.0f} judgements/s "
        f"({took / count * 1e6:.1f} µs each); random values, {released} would be released"
    )


def bench_replay() -> None:
    present = scaled(1_000_000, 1000)
    per_order = len(TESTS)
    with bench_database("rules") as url:
        engine = make_engine(url, pool_size=1)
        started = time.perf_counter()
        with engine.begin() as connection:
            bulk_patients(connection, max(1000, present // 20))
            bulk_orders(
                connection,
                first=1,
                count=present // per_order,
                patients=present // 20,
                tests=TESTS,
                resulted=True,
                review_share=0.05,
            )
            fix_sequences(connection)
        print(f"seeded {present:,} results in {time.perf_counter() - started:.0f} s")
        figures = []
        for attempt in (1, 2):
            with Session(engine) as session:
                started = time.perf_counter()
                summary = replay(session, version=1)
                took = time.perf_counter() - started
                session.rollback()
            figures.append(summary.report_lines(limit=0))
            print(
                f"replay {attempt}: {summary.judged:,} results in {took:.0f} s = "
                f"{summary.judged / took:,.0f} results/s; would release "
                f"{summary.release_rate * 100:.1f} %"
            )
        print("same figures both times:", figures[0] == figures[1])
        for line in figures[0][:14]:
            print("   ", line)
        engine.dispose()


def main() -> None:
    bench_judge()
    bench_replay()
