"""The migrations are the schema: they match the models, and go down and up again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from lab.db import make_engine
from lab.migrate import alembic_config
from lab.tables import Base
from testkit.database import ScratchDatabase, scratch_database


@pytest.fixture
def scratch_url(database_server: str) -> Iterator[str]:
    """An empty database: the migrations make its schema in the test."""
    with scratch_database(database_server, "migrate", migrate=False) as database:
        yield database.url


def test_models_match_the_migrations(test_database: ScratchDatabase) -> None:
    engine = make_engine(test_database.url, pool_size=1)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_down_and_up_again(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "heads")
    command.downgrade(config, "base")
    command.upgrade(config, "heads")
    engine = make_engine(scratch_url, pool_size=1)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT nextval('accession_seq')")).scalar_one() == 1
    engine.dispose()


def test_stored_unmatched_reasons_get_their_code(scratch_url: str) -> None:
    """0021 reads each reason stored before it into the code and parameters the pages say."""
    config = alembic_config(scratch_url)
    command.upgrade(config, "0020_qc_moving_alarm")
    engine = make_engine(scratch_url, pool_size=1)
    insert = text(
        "INSERT INTO unmatched_result (fingerprint, instrument, specimen_id, instrument_test_code,"
        " value, unit, instrument_flags, result_status, operator, reason, raw_record, status,"
        " handling_note) VALUES (:f, 'cobas-1', '2600000014', '685', '5', '', '', 'F', '',"
        " :reason, 'R|1', 'open', '')"
    )
    with engine.begin() as connection:
        connection.execute(insert, {"f": "a", "reason": "K is not ordered on 2600000014"})
        connection.execute(insert, {"f": "b", "reason": "something nobody wrote"})
    command.upgrade(config, "heads")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT reason_code, reason_params FROM unmatched_result ORDER BY fingerprint")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("test_not_ordered", {"code": "K", "number": "2600000014"}),
        ("", {}),
    ]
