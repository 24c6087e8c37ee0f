"""Test fixtures: a real PostgreSQL whose schema is made by the Alembic migrations.

The database server is `LAB_TEST_DATABASE_URL` (CI: the machine's PostgreSQL on 127.0.0.1:5432),
or, when that is unset and nothing answers on 127.0.0.1:5432, an embedded PostgreSQL. Each test
run makes its own database, migrates it once, seeds the demo catalog and one user per role,
and wraps every test in a transaction that is rolled back (polar's pattern).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from lab.audit import Actor
from lab.config import Settings
from lab.db import make_engine, start_embedded_postgres, to_psycopg_url
from lab.demo import seed
from lab.main import create_app
from lab.migrate import upgrade
from lab.users import service as users
from lab.users.roles import Role

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "correct horse battery"


def _server_url(tmp_root: Path) -> str:
    configured = os.environ.get("LAB_TEST_DATABASE_URL")
    if configured:
        return to_psycopg_url(configured)
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_SERVER
    except OSError:
        return start_embedded_postgres(tmp_root)


@dataclass
class TestDatabase:
    __test__ = False
    url: str
    tokens: dict[str, str]


def create_test_database(server: str, label: str) -> TestDatabase:
    """A new database on `server`, migrated, with the demo catalog and one user per role."""
    name = f"lab_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    tokens: dict[str, str] = {}
    with Session(engine) as session:
        seed(session, password=PASSWORD)
        actor = Actor.system("cli")
        for role in Role:
            username = f"t-{role.value}"
            users.create_user(
                session,
                actor=actor,
                username=username,
                display_name=f"Test {role.value}",
                roles=[role.value],
                password=PASSWORD,
            )
            tokens[role.value] = users.create_token(session, actor=actor, username=username)
        session.commit()
    engine.dispose()
    return TestDatabase(url=url, tokens=tokens)


def drop_test_database(database: TestDatabase) -> None:
    url = make_url(database.url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _server_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def test_database(database_server: str) -> Iterator[TestDatabase]:
    """The database of tests that roll back: nothing any test does here is kept."""
    database = create_test_database(database_server, "test")
    yield database
    drop_test_database(database)


@pytest.fixture(scope="session")
def committed_database(database_server: str) -> Iterator[TestDatabase]:
    """A second database for tests whose servers commit from other threads (listeners,
    analyser links): their rows stay, so they must not show up in the rolled-back tests."""
    database = create_test_database(database_server, "committed")
    yield database
    drop_test_database(database)


@pytest.fixture(scope="session")
def engine(test_database: TestDatabase) -> Iterator[Engine]:
    engine = make_engine(test_database.url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        outer = connection.begin()
        yield connection
        outer.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    # Sessions join the outer transaction; their commits only release a savepoint.
    return sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, test_database: TestDatabase) -> Settings:
    return Settings(database_url=test_database.url, data_dir=tmp_path)


@pytest.fixture
def client(
    settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine, session_factory=session_factory)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def tokens(test_database: TestDatabase) -> dict[str, str]:
    return test_database.tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_role(tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    """Headers per role: `as_role["technician"]`."""
    return {role: auth(token) for role, token in tokens.items()}


def actor(role: Role | str, username: str | None = None) -> Actor:
    name = str(role)
    return Actor(user_id=None, username=username or f"t-{name}", roles=frozenset({name}))
