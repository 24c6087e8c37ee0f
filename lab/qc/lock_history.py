"""The history of a QC lock, as a quality manager reads it: when a test was locked on an
analyser and by which run and rule, when and how it was released (an accepted run of every level,
or a person's override with the reason), and what corrective action was written down against the
run that locked it.

The history is worked out from the stored runs and overrides with the same fold the lock itself
is (`lab.qc.lock.changes`), so it cannot disagree with the lock. A release with no corrective
action written down against the locking run is marked: ISO 15189:2022 7.3.7.2 asks that action
on QC failures be recorded, and a release does not wait for it (the override asks for a reason;
an accepted run asks for nothing), so the page and the monthly report show where it is missing.
Reads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text, union
from sqlalchemy.orm import Session

from lab.qc import lock as qc_lock
from lab.qc.actions import RunAction, actions_of
from lab.qc.materials import analyser_name
from lab.tables.catalog import LabTest
from lab.tables.qc import QcOverride, QcRun, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class LockEntry:
    """One change of a lock: locked (by a rejected run) or released (by a run or an override)."""

    instrument: str
    test_code: str
    at: datetime
    state: qc_lock.LockState  # after the change
    rule: str  # the rule that rejected the locking run
    locking_run_id: int | None  # the rejected run that holds (held) the lock
    released_by_run_id: int | None = None  # the accepted run of every level that released it
    override_by: str = ""  # the person who released it without an in-control run
    override_reason: str = ""
    actions: tuple[RunAction, ...] = ()  # written down against the locking run, oldest first

    @property
    def locked(self) -> bool:
        return self.state is qc_lock.LockState.LOCKED

    @property
    def by_override(self) -> bool:
        return bool(self.override_by)

    @property
    def action_missing(self) -> bool:
        """A release with no corrective action written down against the run that locked."""
        return not self.locked and not self.actions


# The lock's changes walked on the server, so a test with years of runs sends back only its
# changes. The same walk as `lab.qc.lock.changes` (a test checks the two agree): only a rejected
# run, an accepted run of every level and an override can change the lock (`step`); taken in
# `order_key` order, the lock is locked exactly when the last of them was a rejection, so it
# changes where one of them differs from the one before, and a release's locking run is the
# rejection just before it.
_WALK = text(
    """
    WITH deciding AS (
        SELECT run_at AS at, id AS sequence, CAST(:run AS text) AS kind,
               status = :rejected AS rejected, id AS run_id, first_rule AS rule
        FROM qc_run
        WHERE instrument = :instrument AND test_id = :test_id AND status <> :establishing
          AND (status = :rejected OR all_levels)
        UNION ALL
        SELECT at, id, CAST(:override AS text), false, locked_by_run_id, ''
        FROM qc_override
        WHERE instrument = :instrument AND test_id = :test_id
    ), walked AS (
        SELECT deciding.*,
               lag(rejected, 1, false) OVER w AS was_locked,
               lag(run_id) OVER w AS before_run_id,
               lag(rule) OVER w AS before_rule
        FROM deciding
        WINDOW w AS (ORDER BY at, sequence, kind)
    )
    SELECT at, sequence, kind, rejected, run_id, rule, before_run_id, before_rule
    FROM walked
    WHERE rejected <> was_locked AND at >= :since AND at < :until
    ORDER BY at DESC, sequence DESC, kind DESC
    LIMIT :limit
    """
)
_ALWAYS = (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))


def _changes(
    session: Session,
    *,
    instrument: str,
    test_id: int,
    limit: int | None = None,
    between: tuple[datetime, datetime] = _ALWAYS,
) -> list[qc_lock.LockChange]:
    """The lock's changes (the last `limit`, in `between`), oldest first."""
    rows = session.execute(
        _WALK,
        {
            "instrument": instrument,
            "test_id": test_id,
            "run": qc_lock.EventKind.RUN.value,
            "override": qc_lock.EventKind.OVERRIDE.value,
            "rejected": RunStatus.REJECTED.value,
            "establishing": RunStatus.ESTABLISHING.value,
            "since": between[0],
            "until": between[1],
            "limit": limit,
        },
    ).all()
    found = []
    for at, sequence, kind, rejected, run_id, rule, before_run_id, before_rule in reversed(rows):
        event = qc_lock.QcEvent(
            at=at,
            sequence=sequence,
            kind=qc_lock.EventKind(kind),
            rejected=rejected,
            rule=rule,
            run_id=run_id,
        )
        if rejected:
            before = qc_lock.IN_CONTROL
            after = qc_lock.Lock(state=qc_lock.LockState.LOCKED, rule=rule, run_id=run_id, since=at)
        else:
            before = qc_lock.Lock(
                state=qc_lock.LockState.LOCKED, rule=before_rule, run_id=before_run_id
            )
            after = qc_lock.Lock(state=qc_lock.LockState.IN_CONTROL, run_id=run_id, since=at)
        found.append(qc_lock.LockChange(event=event, before=before, after=after))
    return found


def history(
    session: Session, *, instrument: str, test: LabTest, limit: int = 20
) -> list[LockEntry]:
    """The last `limit` changes of the lock of `test` on `instrument`, newest first."""
    name = analyser_name(instrument)
    changes = _changes(session, instrument=name, test_id=test.id, limit=limit)
    return _entries(session, name, test.code, changes)[::-1]


def changes_between(
    session: Session, *, start: datetime, end: datetime, instrument: str | None = None
) -> list[LockEntry]:
    """Every change of a lock in [start, end), on one analyser or all, oldest first."""
    runs = select(QcRun.instrument, QcRun.test_id).where(
        QcRun.run_at >= start, QcRun.run_at < end, QcRun.status != RunStatus.ESTABLISHING
    )
    overrides = select(QcOverride.instrument, QcOverride.test_id).where(
        QcOverride.at >= start, QcOverride.at < end
    )
    if instrument:
        runs = runs.where(QcRun.instrument == instrument)
        overrides = overrides.where(QcOverride.instrument == instrument)
    pairs: list[tuple[str, int]] = [
        (str(name), int(test_id)) for name, test_id in session.execute(union(runs, overrides))
    ]
    codes: dict[int, str] = {
        int(test_id): str(code)
        for test_id, code in session.execute(
            select(LabTest.id, LabTest.code).where(LabTest.id.in_({p[1] for p in pairs}))
        )
    }
    found: list[LockEntry] = []
    for name, test_id in sorted(pairs, key=lambda p: (p[0], codes.get(p[1], ""))):
        changes = _changes(session, instrument=name, test_id=test_id, between=(start, end))
        found.extend(_entries(session, name, codes.get(test_id, ""), changes))
    return sorted(found, key=lambda entry: entry.at)


def _entries(
    session: Session, instrument: str, test_code: str, changes: Sequence[qc_lock.LockChange]
) -> list[LockEntry]:
    locking = [
        (change.after if change.after.locked else change.before).run_id for change in changes
    ]
    actions = actions_of(session, {run_id for run_id in locking if run_id is not None})
    override_ids = [
        change.event.sequence
        for change in changes
        if change.event.kind is qc_lock.EventKind.OVERRIDE
    ]
    overrides = (
        {
            o.id: o
            for o in session.scalars(select(QcOverride).where(QcOverride.id.in_(override_ids)))
        }
        if override_ids
        else {}
    )
    entries = []
    for change, run_id in zip(changes, locking, strict=True):
        override = (
            overrides.get(change.event.sequence)
            if change.event.kind is qc_lock.EventKind.OVERRIDE
            else None
        )
        entries.append(
            LockEntry(
                instrument=instrument,
                test_code=test_code,
                at=change.event.at,
                state=change.after.state,
                rule=(change.after if change.after.locked else change.before).rule,
                locking_run_id=run_id,
                released_by_run_id=(
                    change.event.run_id
                    if not change.after.locked and change.event.kind is qc_lock.EventKind.RUN
                    else None
                ),
                override_by=override.person if override else "",
                override_reason=override.reason if override else "",
                actions=tuple(actions.get(run_id, ())) if run_id is not None else (),
            )
        )
    return entries
