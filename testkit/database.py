"""Scratch databases: made on a PostgreSQL server, migrated by Alembic, seeded, dropped.

The schema of every scratch database is made by the migrations (as in production), never by
`create_all`. The server is the machine's PostgreSQL (`LAB_TEST_DATABASE_URL`, or
postgres@127.0.0.1:5432) or, where nothing answers there, an embedded PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.db import as_runtime_role, make_engine, start_embedded_postgres, to_psycopg_url
from lab.demo import seed
from lab.migrate import upgrade
from lab.users import service as users
from lab.users.roles import MACHINE_ROLES, Role
from lab.users.tokens import create_token

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "correct horse battery"  # noqa: S105 - every user of a throwaway database


def server_url(*variables: str, embedded_root: Path | None = None) -> str:
    """The server to make scratch databases on.

    The first of `variables` that is set (then `LAB_TEST_DATABASE_URL`); else the machine's
    PostgreSQL on 127.0.0.1:5432. With `embedded_root`, a machine where nothing answers there
    gets an embedded PostgreSQL under that folder instead.
    """
    for name in (*variables, "LAB_TEST_DATABASE_URL"):
        if os.environ.get(name):
            return to_psycopg_url(os.environ[name])
    if embedded_root is None:
        return DEFAULT_SERVER
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_SERVER
    except OSError:
        return start_embedded_postgres(embedded_root)


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    """A database of its own; `tokens` holds the API token of user `t-<role>` per role when
    it was made with `role_users`."""

    url: str
    tokens: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(make_url(self.url).database)

    @property
    def runtime_url(self) -> str:
        """As the service runs: the `lab_runtime` role, which cannot erase history (the `url`
        is the owner's: migrations, and servers started with it as LAB_DATABASE_URL)."""
        return as_runtime_role(self.url)


def prepare(
    url: str, *, password: str = PASSWORD, role_users: bool = False, rules_active: bool = False
) -> dict[str, str]:
    """Migrate `url` to the head and seed it: the demo catalog and users (admin, bio, lege),
    and with `role_users` one user `t-<role>` per role; {role: API token} of those.

    The demo rule documents are stored as drafts unless `rules_active`: a test database
    releases nothing without a person until a test activates them (the demo itself, `lab serve`
    with LAB_DEMO=1, seeds them active)."""
    upgrade(url)
    engine = make_engine(as_runtime_role(url), pool_size=1)  # as the service will run
    tokens: dict[str, str] = {}
    try:
        with Session(engine) as session:
            seed(session, password=password, rules_active=rules_active)
            if role_users:
                actor = Actor.system("cli")
                for role in Role:
                    username = f"t-{role.value}"
                    users.create_user(
                        session,
                        actor=actor,
                        username=username,
                        display_name=f"Test {role.value}",
                        roles=[role.value],
                        password=None if role in MACHINE_ROLES else password,
                    )
                    tokens[role.value] = create_token(session, actor=actor, username=username).token
            session.commit()
    finally:
        engine.dispose()
    return tokens


def create_database(
    server: str,
    label: str,
    *,
    migrate: bool = True,
    role_users: bool = False,
    password: str = PASSWORD,
    rules_active: bool = False,
) -> ScratchDatabase:
    """A new database `lab_<label>_<pid>_<random>` on `server`; migrated and seeded unless
    `migrate` is false (an empty database, for tests of the migrations themselves, or for a
    `lab serve` with LAB_DEMO=1 to migrate and seed as the demo does)."""
    name = f"lab_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    database = ScratchDatabase(
        url=make_url(server).set(database=name).render_as_string(hide_password=False)
    )
    if not migrate:
        return database
    try:
        tokens = prepare(
            database.url, password=password, role_users=role_users, rules_active=rules_active
        )
    except BaseException:
        drop_database(database)
        raise
    return ScratchDatabase(url=database.url, tokens=tokens)


def drop_database(database: ScratchDatabase) -> None:
    """Drop it, whoever is still connected (WITH FORCE: a killed child may hold connections)."""
    url = make_url(database.url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def scratch_database(
    server: str,
    label: str,
    *,
    migrate: bool = True,
    role_users: bool = False,
    rules_active: bool = False,
) -> Iterator[ScratchDatabase]:
    """`create_database`, dropped when the block ends."""
    database = create_database(
        server, label, migrate=migrate, role_users=role_users, rules_active=rules_active
    )
    try:
        yield database
    finally:
        drop_database(database)
