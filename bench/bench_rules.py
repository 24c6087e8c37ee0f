"""Judgement and replay: what a result's judgement costs, and a replay over stored results.

1. `judge()` alone (pure, in process) over the demo catalog and demo rule set v1: judgements/s.
2. `lab rules replay`'s core over a seeded history of BENCH_SCALE x 1,000,000 results (the core
   seeder's rows: every demo test, random values, one analyser, no flags), run twice: the time,
   results/s, and that the figures are the same both times. The issue's target is a million
   results in under 5 minutes on this machine.

3. The demo formulas and reflex rules in the recording path: tubes holding the inputs of every
   demo formula (NA, K, KREA, GLUK, CA, ALB, KOL, HDL, TG: eGFR, corrected calcium, non-HDL and
   Friedewald LDL from each, and the calcium reflex when calcium is low) recorded through
   `results.record_tube`, taking turns between the demo autoverification rules alone (nothing
   released) and the same with the demo formulas and reflexes: the share they add, by wall time,
   by this process's CPU per result, and in SQL statements per tube.

The cost of the judgement inside the recording path (against recording without it) is measured
where the recording path calls it, in the results benchmarks (`bench core`).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench import bench_database, scaled
from bench.bench_core import ANALYSER, demo_formulas_and_reflexes, tubes_of
from bench.bench_core import demo_ruleset as seeded_ruleset
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences, settle
from lab.db import make_engine, make_session_factory
from lab.results import service as results
from lab.results.judging import ActiveRules
from lab.rules import (
    FormulaSet,
    JudgementContext,
    PreviousResult,
    ResultToJudge,
    calculate,
    judge,
)
from lab.rules import Patient as FormulaPatient
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


# Every input of the demo formulas, on one serum tube, with values around their intervals.
FORMULA_INPUTS = {
    "NA": (132, 148),
    "K": (3.3, 5.2),
    "KREA": (40, 130),
    "GLUK": (3.5, 9),
    "CA": (2.0, 2.6),
    "ALB": (30, 48),
    "KOL": (3.0, 8.0),
    "HDL": (0.8, 2.4),
    "TG": (0.5, 5.5),
}


def bench_formulas() -> None:
    orders = scaled(2000, 40)
    with bench_database("formulas") as url:
        engine = make_engine(url, pool_size=2)
        factory = make_session_factory(engine)
        with engine.begin() as connection:
            bulk_patients(connection, max(1000, orders))
            bulk_orders(
                connection,
                first=1,
                count=orders,
                patients=orders,
                tests=list(FORMULA_INPUTS),
                resulted=False,
            )
            fix_sequences(connection)
        settle(engine)
        ruleset = seeded_ruleset(factory)
        judged_only = replace(
            ruleset,
            tests=MappingProxyType(
                {code: replace(r, autoverify=False) for code, r in ruleset.tests.items()}
            ),
        )
        formulas, reflexes = demo_formulas_and_reflexes(factory, ruleset)
        variants = {
            "judged": ActiveRules(autoverification=judged_only),
            "derived": ActiveRules(
                autoverification=judged_only, formulas=formulas, reflex=reflexes
            ),
        }
        spent = dict.fromkeys(variants, 0.0)
        cpu = dict.fromkeys(variants, 0.0)
        sent = dict.fromkeys(variants, 0)
        counted = dict.fromkeys(variants, 0)
        tubes_done = dict.fromkeys(variants, 0)
        statements = {"n": 0}

        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_: object) -> None:
            statements["n"] += 1

        rng = random.Random(11)
        observed = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
        calculated = 0
        for index, (accession, codes) in enumerate(tubes_of(engine, 1, orders)):
            measurements = [
                results.Measurement(
                    accession_number=accession,
                    test_code=code,
                    value=f"{rng.uniform(*FORMULA_INPUTS[code]):.2f}",
                    observed_at=observed,
                    instrument="bench-analyser",
                    instrument_flags="N",
                    flag_profile="generic",
                )
                for code in codes
            ]
            kind = list(variants)[index % len(variants)]
            before = statements["n"]
            started, cpu_started = time.perf_counter(), time.process_time()
            with factory() as session:
                results.record_tube(
                    session, actor=ANALYSER, measurements=measurements, rules=variants[kind]
                )
                session.commit()
            spent[kind] += time.perf_counter() - started
            cpu[kind] += time.process_time() - cpu_started
            sent[kind] += statements["n"] - before
            counted[kind] += len(measurements)  # measured results; calculated ones come free
            tubes_done[kind] += 1
        with engine.connect() as connection:
            calculated = int(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM ordered_test WHERE added_by_rule LIKE 'calculated %%'"
                ).scalar_one()
            )
            reflexed = int(
                connection.exec_driver_sql(
                    "SELECT count(*) FROM ordered_test WHERE added_by_rule LIKE 'reflex %%'"
                ).scalar_one()
            )
        engine.dispose()
    rate = {kind: counted[kind] / spent[kind] for kind in variants}
    per_result = {kind: cpu[kind] / counted[kind] * 1000 for kind in variants}
    per_tube = {kind: sent[kind] / tubes_done[kind] for kind in variants}
    print(
        f"formulas: {sum(tubes_done.values())} tubes of {len(FORMULA_INPUTS)} inputs; "
        f"{calculated} calculated results and {reflexed} reflex tests added on "
        f"{tubes_done['derived']} tubes"
    )
    for kind, label in (("judged", "judged, none released"), ("derived", "+ formulas, reflexes")):
        print(
            f"  {label:22}: {rate[kind]:7.0f} results/s, {per_result[kind]:6.2f} ms CPU per "
            f"result, {per_tube[kind]:5.1f} statements per tube"
        )
    print(
        f"formulas and reflexes' share per measured result: wall "
        f"{1 - rate['derived'] / rate['judged']:5.0%}, client CPU "
        f"{per_result['derived'] / per_result['judged'] - 1:5.0%} (these tubes write "
        f"{calculated / max(1, counted['derived']):.0%} more results than they measure; the aim, "
        "under 10 % of recording a result, is measured on `bench core`'s tubes)"
    )
    # The calculated results are results too: what a tube costs per result it writes.
    written = counted["derived"] + calculated
    per_written = cpu["derived"] / written * 1000
    print(
        f"per result written (measured + calculated): {per_written:6.2f} ms CPU against "
        f"{per_result['judged']:.2f} ms = {per_written / per_result['judged'] - 1:+5.0%}; "
        f"{sent['derived'] / written:4.2f} against "
        f"{sent['judged'] / counted['judged']:4.2f} statements per result"
    )
    bench_calculate(formulas, count=scaled(100_000, 10_000))


def bench_calculate(formulas: FormulaSet, *, count: int) -> None:
    """The formulas alone, in process: what evaluating one costs beside judging a result."""
    rng = random.Random(5)
    patient = FormulaPatient(age_years=60, age_days=60 * 365, sex="F")
    chosen = [rng.choice(list(formulas.formulas.values())) for _ in range(count)]
    values = [
        {code: Decimal(f"{rng.uniform(*FORMULA_INPUTS[code]):.2f}") for code in f.inputs}
        for f in chosen
    ]
    started = time.perf_counter()
    for formula, results_of in zip(chosen, values, strict=True):
        calculate(formula, results=results_of, patient=patient)
    took = time.perf_counter() - started
    print(
        f"calculate(): {count:,} evaluations of the demo formulas in {took:.2f} s = "
        f"{took / count * 1e6:.1f} µs each"
    )


def main() -> None:
    bench_formulas()
    bench_judge()
    bench_replay()
