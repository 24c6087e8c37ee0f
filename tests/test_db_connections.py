"""Pooled connections: one that PostgreSQL closed is never handed out, and a busy pool costs no
round trip per checkout (lab.db make_engine, `_look_before_use`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from lab import db
from testkit.database import ScratchDatabase


@pytest.fixture
def engine(test_database: ScratchDatabase) -> Iterator[Engine]:
    made = db.make_engine(test_database.runtime_url, pool_size=1)
    yield made
    made.dispose()


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(test_database: ScratchDatabase, pid: int) -> None:
    other = db.make_engine(test_database.url, pool_size=1)
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            connection.commit()
    finally:
        other.dispose()


def test_a_connection_the_server_closed_is_replaced_before_use(
    engine: Engine, test_database: ScratchDatabase
) -> None:
    first = _backend(engine)
    assert _backend(engine) == first  # the pool hands the same connection out again
    _terminate(test_database, first)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server's goodbye reaches the socket
        with engine.connect() as connection:
            raw: Any = connection.connection.dbapi_connection
            if db._closed_by_server(raw):
                break
        time.sleep(0.05)
    # No statement fails: the dead connection is dropped at checkout and a new one made.
    second = _backend(engine)
    assert second != first
    assert _backend(engine) == second


def test_a_busy_connection_is_not_pinged_and_an_idle_one_is(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    for _ in range(5):
        _backend(engine)
    assert pings == []
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 0.0)
    _backend(engine)
    assert pings == [1]
