"""QC benchmark: judging a control run with two years of history, and the chart page (issue 11:
judging under 5 ms with ~5,000 runs per test and analyser; the chart page p95 under 200 ms).

History: 5,000 runs of NA (two levels each, every ~3.5 hours: two years) on the demo analyser,
about 1 % of them rejected, written with SQL. Then:
- judging: one ASTM message's two NA control results stored in `qc_result` and judged through
  `lab.qc.service.take_analyser_results` (lot look-up, targets, rule choice, the accepted runs
  before it, the Westgard rules, storing the run, its points and decisions, the lock and the
  audit row) - each in a savepoint rolled back, so the history stays the same;
- the pure Westgard engine alone on the same history;
- the chart page /qc/chart (two Levey-Jennings charts of the last 60 runs, recent runs table)
  through the real app: once with the chart drawn anew for every request (a new run arrived
  each time) and once as a repeated view (the drawn chart is kept until the data changes).
"""

from __future__ import annotations

import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import event, select, text

from bench import bench_database
from lab.audit import Actor
from lab.config import Settings
from lab.db import make_engine, make_session_factory
from lab.deps import SESSION_COOKIE
from lab.main import create_app
from lab.qc import service as qc
from lab.qc import westgard
from lab.reports.qc_charts import levey_jennings_svg
from lab.tables.catalog import LabTest
from lab.tables.instruments import QcResult
from testkit.database import PASSWORD

HISTORY_RUNS = 5000
JUDGE_ROUNDS = 200
PAGE_ROUNDS = 40
ANALYSER = Actor(user_id=None, username="demo", roles=frozenset({"instrument"}), channel="astm")
START = datetime(2024, 12, 1, tzinfo=UTC)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def figures(label: str, samples: list[float], aim: str) -> None:
    print(
        f"{label:52s} p50 {statistics.median(samples):7.2f} ms  p95 {p95(samples):7.2f} ms  "
        f"({aim})",
        flush=True,
    )


def seed_history(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        test_id = connection.execute(text("SELECT id FROM lab_test WHERE code = 'NA'")).scalar_one()
        lots = dict(
            connection.execute(
                text(
                    "SELECT m.level, l.id FROM qc_lot l JOIN qc_material m ON m.id = l.material_id"
                )
            ).all()
        )
        # Deterministic pseudo-random z-scores (a sum of sines), every 100th run rejected.
        connection.execute(
            text(
                """
                INSERT INTO qc_run (id, instrument, test_id, run_at, run_key, source, status,
                    rules_applied, first_rule, all_levels, entered_by, comment)
                SELECT n, 'demo', :test_id, :start + n * interval '210 minutes', 'b' || n,
                    'analyser', CASE WHEN n % 100 = 0 THEN 'rejected' ELSE 'accepted' END,
                    ARRAY['1-2s','1-3s','2-2s','R-4s','4-1s','10x'],
                    CASE WHEN n % 100 = 0 THEN '1-3s' ELSE '' END, true, 'demo', ''
                FROM generate_series(1, :runs) AS n
                """
            ),
            {"test_id": test_id, "start": START, "runs": HISTORY_RUNS},
        )
        for level, (mean, sd) in {1: (140.0, 1.2), 2: (120.0, 1.1)}.items():
            connection.execute(
                text(
                    """
                    INSERT INTO qc_point (run_id, level, lot_id, value, unit, mean, sd, z, excluded)
                    SELECT n, :level, :lot, round((:mean + :sd * z)::numeric, 2), 'mmol/L',
                        :mean, :sd, z, n % 100 = 0
                    FROM (SELECT n, CASE WHEN n % 100 = 0 THEN 3.4
                                 ELSE 0.9 * sin(n * 1.7 + :level) + 0.5 * sin(n * 0.37) END AS z
                          FROM generate_series(1, :runs) AS n) AS zs
                    """
                ),
                {
                    "level": level,
                    "lot": lots[level],
                    "mean": mean,
                    "sd": sd,
                    "runs": HISTORY_RUNS,
                },
            )
        connection.execute(text("SELECT setval('qc_run_id_seq', :n)"), {"n": HISTORY_RUNS})
        last = START + timedelta(minutes=210 * HISTORY_RUNS)
        connection.execute(
            text(
                """
                INSERT INTO qc_lock (instrument, test_id, state, rule, run_id, since,
                    last_event_at, last_event_sequence, last_event_kind)
                VALUES ('demo', :test_id, 'in_control', '', :n, :last, :last, :n, 'run')
                """
            ),
            {"test_id": test_id, "n": HISTORY_RUNS, "last": last},
        )
        connection.execute(text("ANALYZE"))
    engine.dispose()


def bench_round_trip(url: str) -> None:
    """What one statement costs on this machine now: the judging figure is mostly these."""
    engine = make_engine(url, pool_size=1)
    samples = []
    with engine.connect() as connection:
        for _ in range(200):
            begun = time.perf_counter()
            connection.execute(text("SELECT 1"))
            samples.append((time.perf_counter() - begun) * 1000)
    figures("one SELECT 1 round trip (the machine's load)", samples, "for reference")
    engine.dispose()


def bench_judging(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    factory = make_session_factory(engine)
    samples: list[float] = []
    cpu: list[float] = []
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    when = START + timedelta(minutes=210 * (HISTORY_RUNS + 1))
    with factory() as session:
        for round_ in range(JUDGE_ROUNDS + 5):
            savepoint = session.begin_nested()
            ids = []
            for control_id, value in (("QC1-DEMO", "140.4"), ("QC2-DEMO", "119.7")):
                row = QcResult(
                    fingerprint=secrets.token_hex(16),
                    instrument="demo",
                    control_id=control_id,
                    instrument_test_code="NA",
                    test_code="NA",
                    value=value,
                    unit="mmol/L",
                    instrument_flags="",
                    result_status="F",
                    operator="",
                    observed_at=when,
                    raw_record="",
                )
                session.add(row)
                session.flush()
                ids.append(row.id)
            statements = 0
            event.listen(engine, "before_cursor_execute", count)
            begun = time.perf_counter()
            begun_cpu = time.process_time()
            outcome = qc.take_analyser_results(
                session, actor=ANALYSER, instrument="demo", qc_result_ids=ids
            )
            session.flush()
            elapsed = (time.perf_counter() - begun) * 1000
            elapsed_cpu = (time.process_time() - begun_cpu) * 1000
            event.remove(engine, "before_cursor_execute", count)
            assert len(outcome.runs) == 1 and outcome.runs[0].status == "accepted"
            savepoint.rollback()
            if round_ >= 5:  # the first rounds warm the connection and caches
                samples.append(elapsed)
                cpu.append(elapsed_cpu)
        test_id = session.scalar(select(LabTest.id).where(LabTest.code == "NA"))
        assert test_id is not None
        history = qc.history_before(
            session, instrument="demo", test_id=test_id, run_at=when, run_id=HISTORY_RUNS + 1
        )
    figures(
        f"judge one NA run (2 levels), {HISTORY_RUNS:,} runs stored",
        samples,
        "aim: < 5 ms per control result",
    )
    print(
        f"{'':52s} = {statistics.median(samples) / 2:.2f} ms per control result (median); "
        f"{statements} SQL statements per run ({statements / 2:g} per control result); "
        f"this process's CPU {statistics.median(cpu) / 2:.2f} ms per control result (median)"
    )
    run = westgard.Run(
        run_id=HISTORY_RUNS + 1,
        points=(
            westgard.Point(level=1, value=140.4, mean=140, sd=1.2),
            westgard.Point(level=2, value=119.7, mean=120, sd=1.1),
        ),
    )
    pure: list[float] = []
    for _ in range(2000):
        begun = time.perf_counter()
        westgard.judge_run(run, history)
        pure.append((time.perf_counter() - begun) * 1000)
    figures("the Westgard rules alone (pure, same history)", pure, "part of the above")
    engine.dispose()


def bench_chart_page(url: str) -> None:
    engine = make_engine(url, pool_size=2)
    factory = make_session_factory(engine)
    from lab.users import service as users

    with factory() as session:
        signed = users.sign_in(
            session,
            username="bio",
            password=PASSWORD,
            timeout=timedelta(hours=1),
            max_failures=5,
            lockout=timedelta(minutes=1),
        )
        session.commit()
    app = create_app(Settings(database_url=url), engine=engine, session_factory=factory)
    path = "/qc/chart?instrument=demo&test=NA"
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, signed.session_key)
        for label, fresh in (
            ("chart page, charts drawn anew each time", True),
            ("chart page, repeated view", False),
        ):
            samples = []
            cpu = []
            for round_ in range(PAGE_ROUNDS + 3):
                if fresh:
                    levey_jennings_svg.cache_clear()
                begun = time.perf_counter()
                begun_cpu = time.process_time()
                response = client.get(path)
                elapsed = (time.perf_counter() - begun) * 1000
                elapsed_cpu = (time.process_time() - begun_cpu) * 1000
                if (
                    response.status_code != 200
                    or response.text.count("data:image/svg+xml;base64,") != 2
                ):
                    raise RuntimeError(f"{path} answered {response.status_code}")
                if round_ >= 3:
                    samples.append(elapsed)
                    cpu.append(elapsed_cpu)
            figures(label, samples, f"aim: p95 < 200 ms; {len(response.content):,} bytes")
            print(
                f"{'':52s} this process's CPU (server and client) p50 "
                f"{statistics.median(cpu):.1f} ms, p95 {p95(cpu):.1f} ms per page"
            )
    engine.dispose()


def main() -> None:
    with bench_database("qc") as url:
        started = time.perf_counter()
        seed_history(url)
        print(
            f"seeded {HISTORY_RUNS:,} NA runs (two levels) on analyser demo in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        bench_round_trip(url)
        bench_judging(url)
        bench_chart_page(url)
