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
