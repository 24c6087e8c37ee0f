"""`lab.db.insert_rows` writes what it is given, whatever the values, in the order given.

A scratch table (temporary, in the test's rolled-back transaction) holds one column of each
type the lab's tables use; hypothesis draws rows of arbitrary values, NULLs among them, and
each row read back by the returned id must equal what was sent as PostgreSQL reads it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lab.db import insert_rows

_SAMPLE = Table(
    "insert_rows_sample",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("small", SmallInteger),
    Column("whole", Integer),
    Column("big", BigInteger),
    Column("yes", Boolean),
    Column("day", Date),
    Column("at", DateTime(timezone=True)),
    Column("wall_at", DateTime()),
    Column("ratio", Float),
    Column("amount", Numeric),
    Column("code", String(8)),
    Column("note", Text),
    Column("doc", JSONB),
    Column("plain_doc", JSON),
    Column("flags", ARRAY(String(4))),
    Column("ids", ARRAY(BigInteger)),
    Column("blob", LargeBinary),
    prefixes=["TEMPORARY"],
)
_COLUMNS = [column.name for column in _SAMPLE.columns if column.name != "id"]


@pytest.fixture
def sample(connection: Connection, db: Session) -> Session:
    _SAMPLE.create(connection)
    return db


# PostgreSQL text holds no NUL character, and UTF-8 no lone surrogate.
_texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)
_offsets = st.integers(min_value=-14 * 3600, max_value=14 * 3600).map(
    lambda seconds: timezone(timedelta(seconds=seconds))
)
# Python's datetime ends at years 1 and 9999, in UTC too.
_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.one_of(st.none(), _offsets),
)


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_row = st.fixed_dictionaries(
    {
        "small": _nullable(st.integers(min_value=-(2**15), max_value=2**15 - 1)),
        "whole": _nullable(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        "big": _nullable(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        "yes": _nullable(st.booleans()),
        "day": _nullable(st.dates()),
        "at": _nullable(_datetimes),
        "wall_at": _nullable(_datetimes),
        "ratio": _nullable(st.floats()),
        "amount": _nullable(
            st.decimals(allow_nan=True, allow_infinity=True).filter(
                lambda d: not d.is_finite() or abs(d.adjusted()) < 1000
            )
        ),
        "code": _nullable(_texts),
        "note": _nullable(_texts),
        "doc": _json,
        "plain_doc": _json,
        "flags": _nullable(st.lists(_nullable(_texts), max_size=5)),
        "ids": _nullable(st.lists(_nullable(st.integers(-(2**63), 2**63 - 1)), max_size=5)),
        "blob": _nullable(st.binary(max_size=40)),
    }
)


def _as_stored(column: str, value: Any) -> Any:
    """What PostgreSQL keeps of a value sent to this column."""
    if value is None:
        return None
    if column == "at":
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if column == "wall_at":
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if column == "code":
        return value[:8]
    if column == "flags":
        return [None if flag is None else flag[:4] for flag in value]
    return value


def _same(column: str, sent: Any, read: Any) -> bool:
    expected = _as_stored(column, sent)
    if column == "ratio" and expected is not None and math.isnan(expected):
        return read is not None and math.isnan(read)
    if column == "amount" and expected is not None and expected.is_nan():
        return read is not None and read.is_nan()
    if column == "at" and read is not None:
        return bool(read == expected) and read.utcoffset() == timedelta(0)
    return bool(read == expected)


@given(rows=st.lists(_row, min_size=1, max_size=6))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_value_of_every_column_type_comes_back_in_row_order(
    sample: Session, rows: list[dict[str, Any]]
) -> None:
    with sample.begin_nested() as example:  # one example's failure leaves the next its own
        ids = insert_rows(sample, _SAMPLE, rows, returning_id=True)
        assert len(ids) == len(rows) and ids == sorted(ids)
        read = sample.execute(select(_SAMPLE).where(_SAMPLE.c.id.in_(ids)).order_by(_SAMPLE.c.id))
        for sent, stored in zip(rows, read.mappings(), strict=True):
            for column in _COLUMNS:
                assert _same(column, sent[column], stored[column]), (column, sent[column])
        example.rollback()


def test_rows_without_ids_and_a_subset_of_columns(sample: Session) -> None:
    assert insert_rows(sample, _SAMPLE, []) == []
    at = datetime(2026, 12, 2, 7, 30, 0, 123456, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"amount": Decimal("0.1000000000000000000000000001"), "at": at, "code": "K"},
        {"amount": Decimal("-1E+30"), "at": None, "code": "NA"},
    ]
    assert insert_rows(sample, _SAMPLE, rows) == []
    stored = sample.execute(
        select(_SAMPLE.c.amount, _SAMPLE.c.at, _SAMPLE.c.code, _SAMPLE.c.note).order_by(
            _SAMPLE.c.id
        )
    ).all()
    assert [row._tuple() for row in stored] == [
        (Decimal("0.1000000000000000000000000001"), at, "K", None),
        (Decimal("-1000000000000000000000000000000"), None, "NA", None),
    ]


def test_a_row_missing_a_key_of_the_first_is_refused(sample: Session) -> None:
    with pytest.raises(KeyError):
        rows: list[dict[str, Any]] = [{"code": "A", "note": "x"}, {"code": "B"}]
        insert_rows(sample, _SAMPLE, rows)


def test_a_decimal_inside_a_json_value_is_refused_as_before(sample: Session) -> None:
    with pytest.raises(TypeError):
        insert_rows(sample, _SAMPLE, [{"doc": {"value": Decimal("1.5")}}])


def test_rows_a_unique_key_holds_already_are_skipped_on_request(sample: Session) -> None:
    sample.execute(text("CREATE UNIQUE INDEX ON insert_rows_sample (code)"))
    insert_rows(sample, _SAMPLE, [{"code": "K", "note": "first"}])
    twice: list[dict[str, Any]] = [{"code": "K", "note": "again"}, {"code": "NA", "note": "new"}]
    with pytest.raises(IntegrityError), sample.begin_nested():
        insert_rows(sample, _SAMPLE, twice)
    insert_rows(sample, _SAMPLE, twice, skip_conflicts=True)
    stored = sample.execute(select(_SAMPLE.c.code, _SAMPLE.c.note).order_by(_SAMPLE.c.id)).all()
    assert [row._tuple() for row in stored] == [("K", "first"), ("NA", "new")]
