"""The one function that changes a result: it appends versions and copies the newest onto the row.

Record, rerun, verify, correct, cancel and choose all come here with the states they decided
on. Everything a tube's recording writes goes in one statement (this is the analysers' hot
path), whatever the number of results: the tests the rules added to the tube, the tube's
ordered tests' new status, the new results, their measurements and versions, the audit rows
and the tube's move with its event, as data-modifying parts of one `WITH`. Each kind of row
goes as one JSON parameter, read on the server by `jsonb_to_recordset`, so the statement's
text is the same for one result or fifty (psycopg and PostgreSQL keep it prepared) and the
rows need no per-column Python work. A stored result's new state is copied onto its ORM
object and flushed the ORM's way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, JSON, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from lab import audit
from lab.audit import Actor
from lab.errors import Conflict
from lab.results.state import (
    CURRENT_COLUMNS,
    MEASUREMENT_COLUMNS,
    VERSION_COLUMNS,
    Change,
    NewMeasurement,
    NewResult,
    ResultState,
)
from lab.specimens.service import TubeMove
from lab.tables import OrderedTest, Specimen
from lab.tables.audit import AuditEvent
from lab.tables.results import RESULT_LIFECYCLE, R, Result, ResultVersion, StoredMeasurement


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    """What happens to one result: new versions (oldest first), and measurements stored for
    review without changing what it reports (`further`: they came after it was released).

    `before` is its state before the changes (None: a new result); `measured_before` the number
    of measurements it has already.
    """

    result: Result | NewResult
    before: ResultState | None
    changes: tuple[Change, ...] = ()
    further: tuple[NewMeasurement, ...] = ()
    measured_before: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TestWrite:
    """An ordered test of the tube that changes with its results: a new status, or (`id`
    negative, minus its test's id) a test the rules added, inserted with that status. A new
    result names such a test by the same negative id."""

    id: int
    status: str
    order_id: int = 0
    test_id: int = 0
    specimen_id: int = 0
    due_at: datetime | None = None
    added_by_rule: str = ""


def write_versions(
    session: Session,
    *,
    actor: Actor,
    writes: Sequence[Write],
    now: datetime,
    extra_audits: Sequence[dict[str, Any]] = (),
    tests: Sequence[TestWrite] = (),
    move: TubeMove | None = None,
    lock_order: int | None = None,
) -> list[int]:
    """Store every change as a version and every new measurement; returns the result ids, in
    the order of `writes`. A new result comes with at least one change. `extra_audits` (rows of
    `audit.row`, e.g. a test the rules added to the tube) follow the versions' audit rows;
    `tests` (the tube's ordered tests that change) and `move` (the tube's new status) are
    written in the same statement, the move's audit row last. `lock_order` (an order's id) is
    locked by the same statement: the tube releases results to the record, and the order's
    next statement must see every other tube of the order committed before it."""
    written_at = now.isoformat()  # as the rows' JSON carries it, made once
    fresh: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    measurements: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for index, write in enumerate(writes):
        result = write.result
        stored = isinstance(result, Result)
        patient_id = result.patient_id
        first = result.version + 1 if isinstance(result, Result) else 1
        before = write.before.snapshot(first - 1) if write.before is not None else None
        _check_moves(write)
        if isinstance(result, NewResult):
            keys.append({"k": index, "result_id": None, "ordered_test_id": result.ordered_test_id})
            fresh.append(
                {
                    "k": index,
                    "ordered_test_id": result.ordered_test_id,
                    "specimen_id": result.specimen_id,
                    "test_id": result.test_id,
                    "patient_id": result.patient_id,
                    "urgency": result.urgency,
                    "version": len(write.changes),
                    "recorded_at": written_at,
                    **write.changes[-1].state.current_columns(),
                }
            )
        else:
            keys.append({"k": index, "result_id": result.id, "ordered_test_id": None})
        number = write.measured_before
        for position, change in enumerate(write.changes):
            measured = None
            if change.measurement is not None:
                number += 1
                measured = number
                measurements.append(
                    _measurement(change.measurement, actor, index, number, written_at, after=False)
                )
            version = first + position
            versions.append(
                {
                    **change.state.version_columns(),
                    "k": index,
                    "measured": measured,
                    "version": version,
                    "author": change.author,
                    "reason": change.reason,
                    "created_at": written_at,
                }
            )
            after = change.state.snapshot(version)
            audits.append(
                {
                    **audit.row(
                        actor=change.by or actor,
                        action=change.action,
                        entity_type="result",
                        entity_id="",
                        patient_id=patient_id,
                        before=before,
                        after=after,
                        detail=change.detail,
                    ),
                    "entity_id": None,  # the result's id, known on the server
                    "k": index,
                }
            )
            before = after
        for further in write.further:
            number += 1
            measurements.append(_measurement(further, actor, index, number, written_at, after=True))
            audits.append(
                {
                    **audit.row(
                        actor=actor,
                        action="result.measurement",
                        entity_type="result",
                        entity_id="",
                        patient_id=patient_id,
                        # and the measurement's id, known on the server
                        after={"value": _value(further), "unit": further.unit},
                        detail="a further measurement of a released result, kept for review",
                    ),
                    "entity_id": None,
                    "k": index,
                    "measured": number,
                }
            )
        if stored and write.changes:
            assert isinstance(result, Result)
            _copy_onto(result, write.changes[-1].state, version=first + len(write.changes) - 1)
            if any(change.measurement is not None for change in write.changes):
                result.recorded_at = now
            session.expire(result, ["versions", "measurements"])
        elif stored and write.further:
            session.expire(result, ["measurements"])
    audits.extend(extra_audits)
    if move is not None:
        audits.append(move.audit)
    for place, row in enumerate(audits):  # in order: the trail is read by id
        row["n"] = place
    found = (
        session.connection()
        .exec_driver_sql(
            _statement(),
            {
                "keys": _json(keys),
                "tests": _json([{"id": t.id, "status": t.status} for t in tests if t.id > 0]),
                "new_tests": _json(
                    [
                        {
                            "order_id": t.order_id,
                            "test_id": t.test_id,
                            "specimen_id": t.specimen_id,
                            "status": t.status,
                            "due_at": t.due_at,
                            "added_by_rule": t.added_by_rule,
                        }
                        for t in tests
                        if t.id < 0
                    ]
                ),
                "results": _json(fresh),
                "measurements": _json(measurements),
                "versions": _json(versions),
                "audits": _json(audits),
                "move_id": move.specimen_id if move is not None else None,
                "move_status": move.status if move is not None else None,
                "move_event": move.event if move is not None else None,
                "move_detail": move.detail if move is not None else None,
                "move_actor": actor.username,
                "lock_order": lock_order,
            },
        )
        .all()
    )
    ids = [0] * len(writes)
    for kind, key, new_id in found:
        if kind == "r":
            ids[key] = new_id
    forget_changed(session, OrderedTest, [t.id for t in tests if t.id > 0], ["status"])
    if move is not None:
        forget_changed(session, Specimen, [move.specimen_id], ["status", "events"])
    # The statement above does not flush the session as the ORM's writes did: the results'
    # new state (and whatever else is pending) is written now, so a caller that refreshes or
    # queries sees what was just decided.
    session.flush()
    return ids


def _measurement(
    measurement: NewMeasurement, actor: Actor, k: int, number: int, written_at: str, *, after: bool
) -> dict[str, Any]:
    return {
        **measurement.columns(),
        "k": k,
        "number": number,
        "recorded_at": written_at,
        "recorded_by": actor.username,
        # Stored beside a released result, it waits for a look.
        "after_release": after,
    }


def forget_changed(session: Session, kind: type[Any], ids: Sequence[int], names: list[str]) -> None:
    """Rows this session holds that the statement changed behind the ORM's back are read again
    when next used."""
    held = session.identity_map
    for row_id in ids:
        found = held.get(identity_key(kind, row_id))
        if found is not None:
            session.expire(found, [n for n in names if n in found.__dict__] or None)


def _check_moves(write: Write) -> None:
    """Every status move is one the result lifecycle allows (lab.tables.results); a new result
    begins preliminary or awaiting review."""
    current = write.before.status if write.before is not None else None
    result_id = write.result.id if isinstance(write.result, Result) else "new"
    for change in write.changes:
        target = change.state.status
        if current is None:
            if target not in (R.PRELIMINARY, R.AWAITING_REVIEW):
                raise Conflict(f"a new result cannot begin {target.value.replace('_', ' ')}")
        else:
            RESULT_LIFECYCLE.check(current, target, name=f"result {result_id}")
        current = target


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


#: One encoder for every statement (`json.dumps` with options makes a new one per call).
_json = json.JSONEncoder(default=_plain, separators=(",", ":")).encode


_RESULT: Table = Result.__table__  # type: ignore[assignment]
_MEASUREMENT: Table = StoredMeasurement.__table__  # type: ignore[assignment]
_VERSION: Table = ResultVersion.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]
_RESULT_COLUMNS = (
    "specimen_id",
    "test_id",
    "patient_id",
    "urgency",
    "version",
    "recorded_at",
    *CURRENT_COLUMNS,
)
_MEASUREMENT_COLUMNS = (
    *MEASUREMENT_COLUMNS,
    "number",
    "recorded_at",
    "recorded_by",
    "after_release",
)
_VERSION_COLUMNS = (
    *(c for c in VERSION_COLUMNS if c != "measurement_id"),
    "version",
    "author",
    "reason",
    "created_at",
)
_AUDIT_COLUMNS = (
    "actor_user_id",
    "actor_name",
    "channel",
    "action",
    "entity_type",
    "patient_id",
    "before",
    "after",
    "detail",
    "via",
)


def _rows(table: Table, names: Sequence[str], param: str, keys: str) -> tuple[str, list[str]]:
    """`jsonb_to_recordset` over `param` as rows of `names` (and the `keys` columns, given with
    their types), and each column as the table takes it: a text cut to its length, as an
    explicit cast does (what the ORM's and `insert_rows`' writes did)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    declared, picked = [], []
    for name in names:
        kind = table.c[name].type
        if isinstance(kind, JSON):
            declared.append(f"{name} jsonb")
            picked.append(f"x.{name}")
        elif isinstance(kind, ARRAY | String):
            declared.append(f"{name} {'text[]' if isinstance(kind, ARRAY) else 'text'}")
            picked.append(f"CAST(x.{name} AS {kind.compile(dialect=dialect)})")
        else:
            declared.append(f"{name} {kind.compile(dialect=dialect)}")
            picked.append(f"x.{name}")
    source = f"jsonb_to_recordset(CAST(%({param})s AS jsonb)) AS x({keys}, {', '.join(declared)})"
    return source, picked


@cache
def _statement() -> str:
    """The tube's writes as one statement (the tables' own names and columns, never input)."""
    results, result_values = _rows(
        _RESULT, _RESULT_COLUMNS, "results", "k int, ordered_test_id bigint"
    )
    measured, measured_values = _rows(_MEASUREMENT, _MEASUREMENT_COLUMNS, "measurements", "k int")
    versions, version_values = _rows(
        _VERSION, _VERSION_COLUMNS, "versions", "k int, measured int, measurement_id bigint"
    )
    audits, audit_values = _rows(
        _AUDIT, _AUDIT_COLUMNS, "audits", "n int, k int, measured int, entity_id text"
    )
    return f"""
WITH keys AS (
    SELECT * FROM jsonb_to_recordset(CAST(%(keys)s AS jsonb))
        AS x(k int, result_id bigint, ordered_test_id bigint)
),
added AS (
    INSERT INTO ordered_test (order_id, test_id, specimen_id, panel_code, status, add_on,
                              due_at, cancelled_at, cancel_reason, added_by_rule)
    SELECT x.order_id, x.test_id, x.specimen_id, NULL, x.status, true, x.due_at, NULL, '',
           CAST(x.added_by_rule AS varchar(120))
    FROM jsonb_to_recordset(CAST(%(new_tests)s AS jsonb)) AS x(
        order_id bigint, test_id bigint, specimen_id bigint, status text,
        due_at timestamptz, added_by_rule text)
    ORDER BY x.test_id
    RETURNING id, test_id
),
moved AS (
    UPDATE ordered_test SET status = x.status
    FROM jsonb_to_recordset(CAST(%(tests)s AS jsonb)) AS x(id bigint, status text)
    WHERE ordered_test.id = x.id
      -- The ids again as an array, which the planner reads through the key: it counts a
      -- function's rows as 100 and would scan a young lab's whole table for them.
      AND ordered_test.id = ANY(ARRAY(
          SELECT CAST(t ->> 'id' AS bigint) FROM jsonb_array_elements(CAST(%(tests)s AS jsonb)) t))
    RETURNING ordered_test.id
),
fresh AS (
    INSERT INTO result (ordered_test_id, {", ".join(_RESULT_COLUMNS)})
    SELECT coalesce(added.id, x.ordered_test_id), {", ".join(result_values)}
    FROM {results} LEFT JOIN added ON added.test_id = -x.ordered_test_id
    ORDER BY x.k
    RETURNING id, ordered_test_id
),
ids AS (
    SELECT keys.k, coalesce(keys.result_id, fresh.id) AS id
    FROM keys
    LEFT JOIN added ON added.test_id = -keys.ordered_test_id
    LEFT JOIN fresh ON fresh.ordered_test_id = coalesce(added.id, keys.ordered_test_id)
),
measured AS (
    INSERT INTO measurement (result_id, {", ".join(_MEASUREMENT_COLUMNS)})
    SELECT ids.id, {", ".join(measured_values)}
    FROM {measured} JOIN ids ON ids.k = x.k
    ORDER BY x.k, x.number
    RETURNING id, result_id, number
),
versions AS (
    INSERT INTO result_version (result_id, measurement_id, {", ".join(_VERSION_COLUMNS)})
    SELECT ids.id, coalesce(measured.id, x.measurement_id), {", ".join(version_values)}
    FROM {versions}
    JOIN ids ON ids.k = x.k
    LEFT JOIN measured ON measured.result_id = ids.id AND measured.number = x.measured
    ORDER BY x.k, x.version
    RETURNING id
),
audited AS (
    INSERT INTO audit_event (entity_id, {", ".join(_AUDIT_COLUMNS)})
    SELECT coalesce(x.entity_id, CAST(ids.id AS text)),
           {
        ", ".join(audit_values).replace(
            "x.after",
            "CASE WHEN measured.id IS NULL THEN x.after "
            "ELSE x.after || jsonb_build_object('measurement', measured.id) END",
        )
    }
    FROM {audits}
    LEFT JOIN ids ON ids.k = x.k
    LEFT JOIN measured ON measured.result_id = ids.id AND measured.number = x.measured
    ORDER BY x.n
    RETURNING id
),
tube AS (
    UPDATE specimen SET status = CAST(%(move_status)s AS text)
    WHERE id = CAST(%(move_id)s AS bigint)
    RETURNING id
),
tube_event AS (
    INSERT INTO specimen_event (specimen_id, event, actor, detail)
    SELECT tube.id, CAST(%(move_event)s AS text), CAST(%(move_actor)s AS text),
           CAST(%(move_detail)s AS text)
    FROM tube
    RETURNING id
),
locked AS (
    SELECT id FROM lab_order WHERE id = CAST(%(lock_order)s AS bigint) FOR UPDATE
)
SELECT 'r', ids.k, ids.id FROM ids
UNION ALL SELECT 't', added.test_id, added.id FROM added
UNION ALL SELECT 'o', 0, locked.id FROM locked
"""  # noqa: S608


def _value(measurement: NewMeasurement) -> str:
    if measurement.value_numeric is not None:
        return f"{measurement.comparator or ''}{measurement.value_numeric}"
    return measurement.value_text or ""


def _copy_onto(result: Result, state: ResultState, *, version: int) -> None:
    result.version = version
    for name, value in state.current_columns().items():
        setattr(result, name, value)
