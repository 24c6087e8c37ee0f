"""The one function that changes a result: it appends versions and copies the newest onto the row.

Record, rerun, verify, correct, cancel and choose all come here with the states they decided
on; the tube's new results, measurements, versions and audit rows are written with one INSERT
per table (this is the analysers' hot path), whatever the number of results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.db import insert_rows
from lab.errors import Conflict
from lab.results.state import Change, NewMeasurement, NewResult, ResultState
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


def write_versions(
    session: Session,
    *,
    actor: Actor,
    writes: Sequence[Write],
    now: datetime,
    extra_audits: Sequence[dict[str, Any]] = (),
) -> list[int]:
    """Store every change as a version and every new measurement; returns the result ids, in
    the order of `writes`. A new result comes with at least one change. `extra_audits` (rows of
    `audit.row`, e.g. a test the rules added to the tube) go in the same INSERT as the
    versions' audit rows."""
    ids = _insert_results(session, writes, now=now)
    measured = _insert_measurements(session, actor, writes, ids, now=now)
    versions: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for index, write in enumerate(writes):
        result_id = ids[index]
        patient_id = write.result.patient_id
        first = write.result.version + 1 if isinstance(write.result, Result) else 1
        before = write.before.snapshot(first - 1) if write.before is not None else None
        _check_moves(write, result_id)
        states = [
            change.state.but(measurement_id=measured[(index, number)])
            if change.measurement is not None
            else change.state
            for number, change in enumerate(write.changes)
        ]
        for number, (change, state) in enumerate(zip(write.changes, states, strict=True), first):
            versions.append(
                {
                    **state.version_columns(),
                    "result_id": result_id,
                    "version": number,
                    "author": change.author,
                    "reason": change.reason,
                    "created_at": now,
                }
            )
            after = state.snapshot(number)
            audits.append(
                audit.row(
                    actor=change.by or actor,
                    action=change.action,
                    entity_type="result",
                    entity_id=result_id,
                    patient_id=patient_id,
                    before=before,
                    after=after,
                    detail=change.detail,
                )
            )
            before = after
        for offset, further in enumerate(write.further, len(write.changes)):
            audits.append(
                audit.row(
                    actor=actor,
                    action="result.measurement",
                    entity_type="result",
                    entity_id=result_id,
                    patient_id=patient_id,
                    after={
                        "measurement": measured[(index, offset)],
                        "value": _value(further),
                        "unit": further.unit,
                    },
                    detail="a further measurement of a released result, kept for review",
                )
            )
        if isinstance(write.result, Result) and states:
            _copy_onto(write.result, states[-1], version=first + len(states) - 1)
            if any(change.measurement is not None for change in write.changes):
                write.result.recorded_at = now
            session.expire(write.result, ["versions", "measurements"])
        elif isinstance(write.result, Result) and write.further:
            session.expire(write.result, ["measurements"])
    if versions:  # every version of the tube in one INSERT
        insert_rows(session, _VERSION, versions)
    audit.record_rows(session, [*audits, *extra_audits])  # in order: the trail is read by id
    # The Core INSERTs above do not flush the session as the ORM's did: the results' new state
    # (and whatever else is pending) is written now, so a caller that refreshes or queries
    # sees what was just decided.
    session.flush()
    return ids


def _check_moves(write: Write, result_id: int) -> None:
    """Every status move is one the result lifecycle allows (lab.tables.results); a new result
    begins preliminary or awaiting review."""
    current = write.before.status if write.before is not None else None
    for change in write.changes:
        target = change.state.status
        if current is None:
            if target not in (R.PRELIMINARY, R.AWAITING_REVIEW):
                raise Conflict(f"a new result cannot begin {target.value.replace('_', ' ')}")
        else:
            RESULT_LIFECYCLE.check(current, target, name=f"result {result_id}")
        current = target


def _insert_results(session: Session, writes: Sequence[Write], *, now: datetime) -> list[int]:
    ids = [w.result.id if isinstance(w.result, Result) else 0 for w in writes]
    fresh = [
        (i, w.result, w.changes) for i, w in enumerate(writes) if isinstance(w.result, NewResult)
    ]
    if not fresh:
        return ids
    rows = [
        {
            "ordered_test_id": keys.ordered_test_id,
            "specimen_id": keys.specimen_id,
            "test_id": keys.test_id,
            "patient_id": keys.patient_id,
            "urgency": keys.urgency,
            "version": len(changes),
            "recorded_at": now,
            **changes[-1].state.current_columns(),
        }
        for _, keys, changes in fresh
    ]
    inserted = insert_rows(session, _RESULT, rows, returning_id=True)
    for (index, _, _), new_id in zip(fresh, inserted, strict=True):
        ids[index] = new_id
    return ids


def _insert_measurements(
    session: Session, actor: Actor, writes: Sequence[Write], ids: list[int], *, now: datetime
) -> dict[tuple[int, int], int]:
    """Store the new measurements; returns their ids by (write, change or further position)."""
    keys: list[tuple[int, int]] = []
    rows: list[dict[str, Any]] = []
    for index, write in enumerate(writes):
        new = [change.measurement for change in write.changes] + list(write.further)
        number = write.measured_before
        for position, measurement in enumerate(new):
            if measurement is None:
                continue
            number += 1
            keys.append((index, position))
            rows.append(
                {
                    **measurement.columns(),
                    "result_id": ids[index],
                    "number": number,
                    "recorded_at": now,
                    "recorded_by": actor.username,
                    # Stored beside a released result, it waits for a look.
                    "after_release": position >= len(write.changes),
                }
            )
    if not rows:
        return {}
    inserted = insert_rows(session, _MEASUREMENT, rows, returning_id=True)
    stored = dict(zip(keys, inserted, strict=True))
    return stored


# One short INSERT per table for the whole tube (`lab.db.insert_rows`): the rows are values
# already, and the ORM's bulk path spent more on its bookkeeping per row than the statements
# cost, and sent a new, long text for each number of rows.
_RESULT: Table = Result.__table__  # type: ignore[assignment]
_MEASUREMENT: Table = StoredMeasurement.__table__  # type: ignore[assignment]
_VERSION: Table = ResultVersion.__table__  # type: ignore[assignment]


def _value(measurement: NewMeasurement) -> str:
    if measurement.value_numeric is not None:
        return f"{measurement.comparator or ''}{measurement.value_numeric}"
    return measurement.value_text or ""


def _copy_onto(result: Result, state: ResultState, *, version: int) -> None:
    result.version = version
    for name, value in state.current_columns().items():
        setattr(result, name, value)
