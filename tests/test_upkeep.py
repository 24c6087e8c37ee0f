"""Database upkeep on a real server: a table changed far past autovacuum's own threshold
without an ANALYZE is named, with why; after ANALYZE it is not. The service's own role reads
it (`lab_runtime`), and `/healthz` carries the alarm."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from lab import upkeep
from lab.db import make_engine, make_session_factory
from lab.health import Components
from lab.health import router as health_router
from testkit.database import ScratchDatabase, scratch_database


@pytest.fixture(scope="module")
def database(database_server: str) -> Iterator[ScratchDatabase]:
    with scratch_database(database_server, "upkeep") as made:
        yield made


def _as_owner(database: ScratchDatabase, *statements: str) -> None:
    engine = create_engine(database.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
            # The server's statistics reach pg_stat_user_tables when a session flushes them.
            connection.execute(text("SELECT pg_stat_force_next_flush()"))
    finally:
        engine.dispose()


def _grown_since_analyze(database: ScratchDatabase, table: str, options: str = "") -> None:
    """A table analyzed when empty, then 60,000 rows inserted (and the counts flushed)."""
    _as_owner(
        database,
        f"CREATE TABLE {table} (n integer){options}",
        f"ANALYZE {table}",
        f"INSERT INTO {table} SELECT generate_series(1, 60000)",
    )


def _report(database: ScratchDatabase, **limits: float) -> upkeep.UpkeepReport:
    engine = make_engine(database.runtime_url, pool_size=1)  # as the service reads it
    try:
        with make_session_factory(engine)() as session:
            return upkeep.check(session, **limits)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_a_table_far_behind_its_analyze_is_named_until_analyzed(
    database: ScratchDatabase,
) -> None:
    _grown_since_analyze(database, "upkeep_sample")
    report = _report(database)
    (behind,) = [table for table in report.behind if table.name == "upkeep_sample"]
    assert behind.changed_since_analyze >= 60_000 and behind.autovacuum_enabled
    assert "upkeep_sample" in report.alarm
    engine = create_engine(database.url)
    with engine.connect() as connection:
        server_on = connection.execute(text("SHOW autovacuum")).scalar() == "on"
    engine.dispose()
    assert report.autovacuum is server_on
    assert ("autovacuum is off on the server" in report.alarm) is not server_on
    # Fewer changed rows than the minimum never count.
    assert "upkeep_sample" not in [t.name for t in _report(database, minimum=100_000).behind]

    _as_owner(database, "ANALYZE upkeep_sample")
    assert "upkeep_sample" not in [t.name for t in _report(database).behind]


def test_a_table_with_autovacuum_turned_off_says_so(database: ScratchDatabase) -> None:
    _grown_since_analyze(database, "upkeep_off", " WITH (autovacuum_enabled = off)")
    report = _report(database)
    (behind,) = [table for table in report.behind if table.name == "upkeep_off"]
    assert behind.autovacuum_enabled is False
    if report.autovacuum:
        assert "turned off for some of these tables" in report.alarm


def test_the_alarm_says_why_the_statistics_are_behind() -> None:
    """The alarm's reason, for each state of autovacuum (this machine's server runs with it
    off, so the tests above on a real server see only that one)."""
    on = upkeep.TableBehind(name="result", rows=1, changed_since_analyze=9, autovacuum_enabled=True)
    off = upkeep.TableBehind(
        name="audit_event", rows=1, changed_since_analyze=9, autovacuum_enabled=False
    )
    assert upkeep.UpkeepReport(autovacuum=True, behind=()).alarm == ""
    assert "off on the server" in upkeep.UpkeepReport(autovacuum=False, behind=(on,)).alarm
    assert "turned off for some" in upkeep.UpkeepReport(autovacuum=True, behind=(on, off)).alarm
    behind = upkeep.UpkeepReport(autovacuum=True, behind=(on,)).alarm
    assert behind.startswith("statistics out of date on result:") and "on but behind" in behind
    many = tuple(
        upkeep.TableBehind(name=f"t{n}", rows=1, changed_since_analyze=9, autovacuum_enabled=True)
        for n in range(7)
    )
    assert (
        "t0, t1, t2, t3, t4 and 2 more" in upkeep.UpkeepReport(autovacuum=True, behind=many).alarm
    )


def test_healthz_carries_the_alarm_and_is_degraded(database: ScratchDatabase) -> None:
    _grown_since_analyze(database, "upkeep_healthz")
    engine = make_engine(database.runtime_url, pool_size=2)
    app = FastAPI(lifespan=upkeep.starter(every=3600))  # the starter is a lifespan
    app.include_router(health_router)
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.components = Components()
    try:
        with TestClient(app) as client:
            deadline = time.monotonic() + 10
            while (body := client.get("/healthz").json())["components"]["database_upkeep"][
                "state"
            ] == "starting" and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        engine.dispose()
    assert body["status"] == "degraded"
    part = body["components"]["database_upkeep"]
    assert "upkeep_healthz" in part["alarm"]
    assert set(part) == {"state", "alarm"}  # not signed in: states and alarms only
