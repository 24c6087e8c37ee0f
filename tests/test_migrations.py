"""The migrations are the schema: they match the models, and go down and up again."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lab.db import make_engine
from lab.migrate import alembic_config
from lab.tables import Base
from tests.conftest import TestDatabase


@pytest.fixture
def scratch_url(test_database: TestDatabase) -> Iterator[str]:
    server = make_url(test_database.url)
    name = f"lab_migrate_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_models_match_the_migrations(test_database: TestDatabase) -> None:
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
