"""Core benchmark: record results through `results.service` into a database that already holds
a million results, beside plain psycopg inserts of the same rows, and time the review queue and
one patient's cumulative results. Every other tube is judged by the demo autoverification rule
set (and the results it releases are queued for the record), the others by none: the
difference is the judgement's share of the recording path.

Scale with BENCH_SCALE (1 = the issue's sizes: 1,000,000 results present, 100,000 recorded).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from bench import SCALE, bench_database
from bench.core_seed import bulk_orders, bulk_patients, fix_sequences, settle
from lab.audit import Actor
from lab.db import make_engine, make_session_factory
from lab.results import queries as result_queries
from lab.results import service as results
from lab.results.judging import NO_RULES, ActiveRules
from lab.rules import (
    FormulaInput,
    FormulaSet,
    ReflexSet,
    RuleSet,
    parse_formulas,
    parse_reflexes,
    parse_ruleset,
)
from lab.rules.demo import DEMO_AUTOVERIFICATION, demo_texts

ALL_TESTS = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK"]
VALUES = {
    "HB": (11, 17),
    "LPK": (3, 12),
    "TPK": (120, 400),
    "NA": (132, 148),
    "K": (3.3, 5.2),
    "KREA": (40, 130),
    "CRP": (0, 40),
    "GLUK": (3.5, 9),
}
ANALYSER = Actor(
    user_id=None, username="bench-analyser", roles=frozenset({"instrument"}), channel="astm"
)
READER = Actor(user_id=None, username="bench-reader", roles=frozenset({"physician"}))


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    present = int(1_000_000 * SCALE)
    recorded = int(100_000 * SCALE)
    heavy = min(10_000, present // 10)
    with bench_database("core") as url:
        run(url, present=present, recorded=recorded, heavy=heavy)


def run(url: str, *, present: int, recorded: int, heavy: int) -> None:
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    started = time.perf_counter()
    per_order = len(ALL_TESTS)
    busy_orders = (present - heavy) // per_order
    pending_orders = recorded // per_order
    with engine.begin() as connection:
        bulk_patients(connection, max(1000, present // 20))
        # Patient 1 has `heavy` sodium results: the cumulative query's worst case.
        bulk_orders(connection, first=1, count=heavy, patients=1, tests=["NA"], resulted=True)
        first = heavy + 1
        bulk_orders(
            connection,
            first=first,
            count=busy_orders,
            patients=present // 20,
            tests=ALL_TESTS,
            resulted=True,
            review_share=0.01,
        )
        first += busy_orders
        service_first, ceiling_first = first, first + pending_orders
        for start in (service_first, ceiling_first):
            bulk_orders(
                connection,
                first=start,
                count=pending_orders,
                patients=present // 20,
                tests=ALL_TESTS,
                resulted=False,
            )
        fix_sequences(connection)
        count = connection.execute(text("SELECT count(*) FROM result")).scalar_one()
    settle(engine)
    print(f"seeded {count:,} results ({time.perf_counter() - started:.0f} s)")

    tubes = tubes_of(engine, service_first, pending_orders)
    rng = random.Random(7)
    observed = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    ruleset = demo_ruleset(factory)
    # The same rules with autoverification off for every test: judged and held, nothing released.
    judged_only = replace(
        ruleset,
        tests=MappingProxyType(
            {code: replace(rules, autoverify=False) for code, rules in ruleset.tests.items()}
        ),
    )
    formulas, reflexes = demo_formulas_and_reflexes(factory, ruleset)
    variants = {
        "without": NO_RULES,
        "judged": ActiveRules(autoverification=judged_only),
        "derived": ActiveRules(autoverification=judged_only, formulas=formulas, reflex=reflexes),
        "with": ActiveRules(autoverification=ruleset),
    }

    # The tubes take turns: no rule set; the demo rule set with nothing released (the judgement
    # alone); the same with the demo formulas (eGFR from creatinine) and reflex rules; the demo
    # rule set (autoverified results released to the outbox, as in production). The machine's
    # load falls on all of them alike.
    spent = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)  # this process's CPU: the judgement is pure Python
    sent = dict.fromkeys(variants, 0)  # SQL statements: the database's share
    counted = dict.fromkeys(variants, 0)
    tubes_done = dict.fromkeys(variants, 0)
    statements = {"n": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_: object) -> None:
        statements["n"] += 1

    autoverified = 0
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
        # By order, not by tube: each order has an EDTA and a serum tube, and every variant
        # must get both kinds alike.
        kind = list(variants)[(index // 2) % len(variants)]
        statements_before = statements["n"]
        started, cpu_started = time.perf_counter(), time.process_time()
        with factory() as session:
            outcomes = results.record_tube(
                session, actor=ANALYSER, measurements=measurements, rules=variants[kind]
            )
            session.commit()
        spent[kind] += time.perf_counter() - started
        cpu[kind] += time.process_time() - cpu_started
        sent[kind] += statements["n"] - statements_before
        counted[kind] += len(measurements)
        tubes_done[kind] += 1
        autoverified += sum(1 for o in outcomes if o.status == "verified")
    done = sum(counted.values())
    service_rate = done / sum(spent.values())
    rate = {kind: counted[kind] / spent[kind] for kind in variants}
    per_result = {kind: cpu[kind] / counted[kind] * 1000 for kind in variants}
    per_tube = {kind: sent[kind] / tubes_done[kind] for kind in variants}

    ceiling_rate = plain_inserts(url, tubes_of(engine, ceiling_first, pending_orders), rng)
    print(
        f"results.service.record : {service_rate:8.0f} results/s "
        f"({done:,} results, one transaction per tube)"
    )
    print(
        f"plain psycopg inserts  : {ceiling_rate:8.0f} results/s "
        "(same rows: result + version + audit, one transaction per tube; the ceiling)"
    )
    print(f"service / ceiling      : {service_rate / ceiling_rate:8.0%}   (aim: at least 40%)")
    print(
        f"without a rule set     : {rate['without']:8.0f} results/s\n"
        f"judged, none released  : {rate['judged']:8.0f} results/s\n"
        f"+ formulas and reflexes: {rate['derived']:8.0f} results/s "
        "(eGFR calculated with every creatinine)\n"
        f"judged and released    : {rate['with']:8.0f} results/s "
        f"({autoverified:,} of {counted['with']:,} autoverified and queued for the record)\n"
        f"judgement's share      : {1 - rate['judged'] / rate['without']:8.0%}   "
        "(aim: under 20% of the recording path)\n"
        f"formulas and reflexes  : {1 - rate['derived'] / rate['judged']:8.0%}   "
        "(aim: under 10% of recording a result)\n"
        f"with the release       : {1 - rate['with'] / rate['without']:8.0%}   "
        "(the outbox work any verification costs)"
    )
    # Wall time on a shared machine moves with everybody's load; the client's CPU per result and
    # the statements per tube do not.
    for kind, label in (
        ("without", "without a rule set"),
        ("judged", "judged, none released"),
        ("derived", "+ formulas and reflexes"),
        ("with", "judged and released"),
    ):
        print(
            f"  {label:24}: {per_result[kind]:6.2f} ms CPU per result, "
            f"{per_tube[kind]:5.1f} statements per tube"
        )
    # The gap between a result the rules release (outbox written, order refreshed) and one
    # they hold for a person, as results/s: measured (wall, moves with the machine's load) and
    # what this process's CPU alone would allow (1000 / ms CPU per result).
    print(
        f"released vs held       : {rate['with']:8.0f} vs {rate['judged']:.0f} results/s "
        f"(wall); {1000 / per_result['with']:.0f} vs {1000 / per_result['judged']:.0f} "
        "results/s of client CPU; "
        f"{per_tube['with'] / per_tube['judged']:.1f}x the statements per tube"
    )
    print(
        f"judgement's share of the client CPU: "
        f"{per_result['judged'] / per_result['without'] - 1:6.0%}; formulas and reflexes: "
        f"{per_result['derived'] / per_result['judged'] - 1:6.0%}"
    )

    def review_queue() -> None:
        with factory() as session:
            result_queries.review_queue(session, limit=100)

    def cumulative() -> None:
        with factory() as session:
            points = result_queries.cumulative(session, actor=READER, patient_id=1, test_code="NA")
            if len(points) < heavy * 0.98:  # 1% were left awaiting review, not released
                raise RuntimeError(f"cumulative gave {len(points)} of {heavy}")
            session.rollback()

    queue_ms = timed(review_queue, 50)
    cumulative_ms = timed(cumulative, 30)
    print(
        f"review queue (100 of {awaiting(engine):,} awaiting) p95: {p95(queue_ms):6.1f} ms "
        "(aim < 100 ms)"
    )
    print(
        f"cumulative ({heavy:,} results, one patient) p95:      {p95(cumulative_ms):6.1f} ms "
        "(aim < 100 ms)"
    )
    engine.dispose()


def demo_ruleset(factory) -> RuleSet:  # type: ignore[no-untyped-def]
    """The demo autoverification rule set, checked against the seeded catalog."""
    with factory() as session:
        units = dict(session.execute(text("SELECT code, unit FROM lab_test")).tuples().all())
    return parse_ruleset(
        DEMO_AUTOVERIFICATION.read_text(encoding="utf-8"), version=1, known_tests=units
    )


def demo_formulas_and_reflexes(factory, ruleset: RuleSet) -> tuple[FormulaSet, ReflexSet]:  # type: ignore[no-untyped-def]
    """The demo formula and reflex documents, checked against the seeded catalog."""
    with factory() as session:
        units = dict(session.execute(text("SELECT code, unit FROM lab_test")).tuples().all())
    inputs = {}
    for code, unit in units.items():
        limits = ruleset.for_test(code)
        low = limits.plausible_low if limits is not None else None
        high = limits.plausible_high if limits is not None else None
        inputs[code] = FormulaInput(
            unit=unit,
            low=float(low) if low is not None else None,
            high=float(high) if high is not None else None,
        )
    texts = demo_texts()
    return (
        parse_formulas(texts["formulas"], version=1, known_tests=inputs),
        parse_reflexes(texts["reflex"], version=1, known_tests=units),
    )


def tubes_of(engine, first: int, count: int) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                """
                SELECT s.accession_number, array_agg(t.code ORDER BY t.code)
                FROM specimen s JOIN ordered_test ot ON ot.specimen_id = s.id
                JOIN lab_test t ON t.id = ot.test_id
                WHERE s.order_id BETWEEN :first AND :last
                GROUP BY s.id ORDER BY s.id
                """
            ),
            {"first": first, "last": first + count - 1},
        ).all()
    return [(row[0], list(row[1])) for row in rows]


def awaiting(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM result WHERE status = 'awaiting_review'")
            ).scalar_one()
        )


def plain_inserts(url: str, tubes: list[tuple[str, list[str]]], rng: random.Random) -> float:
    """The same rows written with hand-written SQL over psycopg: the most a service could do."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = 0
    with psycopg.connect(conninfo) as connection:
        tests = dict(connection.execute("SELECT code, id FROM lab_test").fetchall())
        started = time.perf_counter()
        for accession, codes in tubes:
            specimen_id, patient_id = connection.execute(
                "SELECT id, patient_id FROM specimen WHERE accession_number = %s", (accession,)
            ).fetchone()  # type: ignore[misc]
            for code in codes:
                low, high = VALUES[code]
                value = round(rng.uniform(low, high), 1)
                ordered_id = connection.execute(
                    "SELECT id FROM ordered_test WHERE specimen_id = %s AND test_id = %s",
                    (specimen_id, tests[code]),
                ).fetchone()[0]  # type: ignore[index]
                result_id = connection.execute(
                    "INSERT INTO result (ordered_test_id, specimen_id, test_id, patient_id, "
                    "version, status, value_numeric, unit, flags, recorded_at) VALUES "
                    "(%s, %s, %s, %s, 1, 'awaiting_review', %s, '', '{}', now()) RETURNING id",
                    (ordered_id, specimen_id, tests[code], patient_id, value),
                ).fetchone()[0]  # type: ignore[index]
                connection.execute(
                    "INSERT INTO result_version (result_id, version, status, value_numeric, "
                    "flags, instrument_flags, instrument, operator, author, reason, comment, "
                    "critical_notification) VALUES (%s, 1, 'awaiting_review', %s, '{}', '', "
                    "'bench', '', 'bench', '', '', '')",
                    (result_id, value),
                )
                connection.execute(
                    "INSERT INTO audit_event (actor_name, channel, action, entity_type, "
                    "entity_id, patient_id, detail) VALUES ('bench', 'astm', 'result.record', "
                    "'result', %s, %s, '')",
                    (str(result_id), patient_id),
                )
                connection.execute(
                    "UPDATE ordered_test SET status = 'resulted' WHERE id = %s", (ordered_id,)
                )
                done += 1
            connection.commit()
        return done / (time.perf_counter() - started)
