"""An audit the application cannot erase (issue 14): the runtime role may only add to the
history tables, TRUNCATE is refused to everyone, and the hash chain finds a changed or removed
row. Real PostgreSQL, the real roles made by migration 0013_trust."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from lab import audit, audit_chain
from lab.audit import Actor
from lab.cli import main as lab_cli
from lab.db import make_engine, make_session_factory, transaction
from testkit.database import ScratchDatabase, create_database, drop_database

HISTORY = ("audit_event", "result_version", "specimen_event", "audit_seal")


@pytest.fixture(scope="module")
def chain_database(database_server: str) -> Iterator[ScratchDatabase]:
    """A database of its own: these tests tamper with the history as the owner."""
    database = create_database(database_server, "chain", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture
def runtime(chain_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(chain_database.runtime_url, pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def owner(chain_database: ScratchDatabase) -> Iterator[Engine]:
    engine = create_engine(chain_database.url)
    yield engine
    engine.dispose()


def _refused(engine: Engine, statement: str) -> str:
    with engine.connect() as connection, pytest.raises(DBAPIError) as raised:
        connection.execute(text(statement))
    return str(raised.value.orig)


@pytest.mark.parametrize("table", HISTORY)
def test_the_runtime_role_cannot_rewrite_or_empty_history(runtime: Engine, table: str) -> None:
    assert "permission denied" in _refused(runtime, f"TRUNCATE {table}")
    assert "permission denied" in _refused(runtime, f"DELETE FROM {table}")
    assert "permission denied" in _refused(runtime, f"UPDATE {table} SET {_column(table)}")
    assert "must be owner" in _refused(runtime, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    assert "must be owner" in _refused(runtime, f"DROP TABLE {table}")


def _column(table: str) -> str:
    return {
        "audit_event": "detail = 'x'",
        "result_version": "reason = 'x'",
        "specimen_event": "detail = 'x'",
        "audit_seal": "chain_hash = 'x'",
    }.get(table, "id = id")


def test_the_runtime_role_may_add_and_read_history_and_change_working_tables(
    runtime: Engine,
) -> None:
    factory = make_session_factory(runtime)
    with transaction(factory) as session:
        audit.record(
            session,
            actor=Actor(user_id=None, username="t", channel="api", via="token:1"),
            action="test.add",
            entity_type="test",
            entity_id=1,
        )
        session.execute(text("UPDATE lab_user SET display_name = display_name"))
    with runtime.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_event")).scalar_one() > 0


@pytest.mark.parametrize("table", HISTORY)
def test_truncate_is_refused_to_the_owner_too(owner: Engine, table: str) -> None:
    assert "append-only" in _refused(owner, f"TRUNCATE {table}")


def test_the_chain_finds_a_changed_and_a_removed_row(
    runtime: Engine,
    owner: Engine,
    chain_database: ScratchDatabase,
    capsys: pytest.CaptureFixture[str],
) -> None:
    factory = make_session_factory(runtime)
    for number in range(5):
        with transaction(factory) as session:
            audit.record(
                session,
                actor=Actor(user_id=None, username="chain", channel="api"),
                action="test.chain",
                entity_type="test",
                entity_id=number,
                after={"value": number},
            )
    with transaction(factory) as session:
        assert audit_chain.seal(session) >= 5
    with factory() as session:
        report = audit_chain.verify(session)
    assert report.intact and report.sealed >= 5 and report.unsealed == 0
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAB_DATABASE_URL", chain_database.url)
        from lab.config import get_settings

        get_settings.cache_clear()
        assert lab_cli(["audit", "verify"]) == 0
        assert "audit chain intact" in capsys.readouterr().out

        # Only the owner (or a superuser) can get past the triggers; the chain still tells.
        with owner.begin() as connection:
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            target = connection.execute(
                text("SELECT id FROM audit_event WHERE action = 'test.chain' ORDER BY id LIMIT 1")
            ).scalar_one()
            connection.execute(
                text("UPDATE audit_event SET detail = 'rewritten' WHERE id = :id"), {"id": target}
            )
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        with factory() as session:
            changed = audit_chain.verify(session)
        assert not changed.intact and "changed" in changed.problem
        assert lab_cli(["audit", "verify"]) == 1
        assert "CHAIN BROKEN" in capsys.readouterr().out

        with owner.begin() as connection:
            connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            connection.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": target})
            connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        with factory() as session:
            removed = audit_chain.verify(session)
        assert not removed.intact and "gone" in removed.problem
        get_settings.cache_clear()


def test_rows_of_a_transaction_still_running_wait_for_the_next_round(
    runtime: Engine,
) -> None:
    factory = make_session_factory(runtime)
    with factory() as open_session:
        audit.record(
            open_session,
            actor=Actor(user_id=None, username="late", channel="api"),
            action="test.late",
            entity_type="test",
            entity_id=1,
        )
        open_session.flush()  # inserted, not committed
        with transaction(factory) as session:
            audit_chain.seal(session)
        open_session.commit()
    with factory() as session:
        unsealed = session.execute(
            text(
                "SELECT count(*) FROM audit_event a WHERE action = 'test.late' AND NOT EXISTS "
                "(SELECT 1 FROM audit_seal s WHERE s.audit_id = a.id)"
            )
        ).scalar_one()
    assert unsealed == 1
    with transaction(factory) as session:
        assert audit_chain.seal(session) >= 1


def _note(session: Session, action: str, number: int) -> None:
    audit.record(
        session,
        actor=Actor(user_id=None, username="floor", channel="api"),
        action=action,
        entity_type="test",
        entity_id=number,
    )
    session.flush()


def _unsealed(factory: sessionmaker[Session], action: str) -> int:
    with factory() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM audit_event a WHERE action = :action AND NOT EXISTS "
                    "(SELECT 1 FROM audit_seal s WHERE s.audit_id = a.id)"
                ),
                {"action": action},
            ).scalar_one()
        )


def _floor(factory: sessionmaker[Session]) -> int | None:
    with factory() as session:
        found = session.execute(
            text("SELECT sealed_below FROM audit_seal ORDER BY seq DESC LIMIT 1")
        ).scalar_one_or_none()
        return None if found is None else int(found)


def test_a_round_reads_from_the_floor_the_last_whole_round_left(
    chain_database: ScratchDatabase,
) -> None:
    """A round that took every row below its horizon moves the floor up to it; one cut short
    leaves it; a row committed late under an id the chain has passed is still sealed, since its
    transaction is not older than the floor."""
    engine = make_engine(chain_database.runtime_url, pool_size=4)
    try:
        _rounds(make_session_factory(engine))
    finally:
        engine.dispose()


def _rounds(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        audit_chain.seal(session)
    for number in range(3):
        with transaction(factory) as session:
            _note(session, "test.floor", number)
    with transaction(factory) as session:
        assert audit_chain.seal(session, limit=2) == 2
    cut_short = _floor(factory)
    with factory() as session:
        newest = session.execute(
            text("SELECT max(xact) FROM audit_event WHERE action = 'test.floor'")
        ).scalar_one()
    assert cut_short is not None and cut_short <= newest
    with transaction(factory) as session:
        assert audit_chain.seal(session) == 1
    whole = _floor(factory)
    assert whole is not None and whole > newest
    assert _unsealed(factory, "test.floor") == 0

    # `earlier` takes its transaction id first, `later` inserts its row first: the row of the
    # older transaction gets the higher id and is sealed first; `later`'s, committed after that
    # round, has the lower id and is sealed by the next.
    with factory() as earlier, factory() as later:
        earlier.execute(text("SELECT pg_current_xact_id()"))
        _note(later, "test.floor.late", 1)
        _note(earlier, "test.floor.late", 2)
        earlier.commit()
        with transaction(factory) as session:
            assert audit_chain.seal(session) == 1  # `earlier`'s row
        own = later.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
        floor = _floor(factory)  # at most the oldest transaction still running
        assert floor is not None and whole <= floor <= own
        later.commit()
    assert _unsealed(factory, "test.floor.late") == 1
    with transaction(factory) as session:
        assert audit_chain.seal(session) == 1
    assert _unsealed(factory, "test.floor.late") == 0
    with factory() as session:  # (the chain itself was broken on purpose by a test above)
        assert audit_chain.verify(session).unsealed == 0
