"""QC runs: take control results in, judge them by the Westgard rules, lock and unlock tests.

The one question the results ask of QC is `is_locked` (or `locked_tests` for a tube): a patient
result of a locked test on that analyser is held with reason `qc`. A run is judged when it is
stored, against the accepted runs before it (`westgard.judge_run`); a rejection locks the test on
that analyser at once, an accepted run of every level or a person's documented override unlocks
it (`lab.qc.lock`). Everything is audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session, noload

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.errors import Conflict, InvalidInput
from lab.qc import lock as qc_lock
from lab.qc import materials, westgard
from lab.qc.materials import analyser_name
from lab.tables.catalog import LabTest
from lab.tables.instruments import QcResult
from lab.tables.qc import (
    LockState,
    ProblemStatus,
    QcLock,
    QcLot,
    QcOverride,
    QcPoint,
    QcProblem,
    QcRun,
    QcTarget,
    QcViolation,
    RunSource,
    RunStatus,
    TargetSource,
)
from lab.timeutil import as_utc, utcnow

# LIS2-A2 10.1.9: results a control may be judged on (as for patient results).
_JUDGEABLE_STATUS = {"", "F", "C", "P", "R"}


# --- the question the results ask ---------------------------------------------------------------


def is_locked(session: Session, *, instrument: str, test_code: str) -> bool:
    """Is `test_code` locked by QC on this analyser? A result typed in by hand (no analyser)
    is never locked by an analyser's QC."""
    return test_code.strip().upper() in locked_tests(
        session, instrument=instrument, test_codes=[test_code]
    )


def locked_tests(session: Session, *, instrument: str, test_codes: Iterable[str]) -> frozenset[str]:
    """The test codes (upper case) among `test_codes` that are locked on this analyser."""
    name = analyser_name(instrument)
    codes = {code.strip().upper() for code in test_codes}
    if not name or not codes:
        return frozenset()
    found = session.scalars(
        select(LabTest.code)
        .join(QcLock, QcLock.test_id == LabTest.id)
        .where(
            QcLock.instrument == name,
            QcLock.state == LockState.LOCKED,
            LabTest.code.in_(codes),
        )
    )
    return frozenset(code.upper() for code in found)


def locked_of(session: Session, *, measured: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Of (analyser, test code) pairs, the test codes locked on the analyser that measured them
    (one query per analyser; no analyser named, as for a result typed in, is never locked)."""
    by_analyser: dict[str, set[str]] = {}
    for instrument, code in measured:
        if analyser_name(instrument):
            by_analyser.setdefault(analyser_name(instrument), set()).add(code)
    locked: set[str] = set()
    for name, codes in by_analyser.items():
        locked |= locked_tests(session, instrument=name, test_codes=codes)
    return frozenset(locked)


# --- control results in -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A control result that can be judged: its lot, level and the target in force."""

    level: int
    lot_id: int
    value: Decimal
    unit: str
    observed_at: datetime
    target: QcTarget
    qc_result_id: int | None = None


@dataclass(slots=True, kw_only=True)
class IntakeOutcome:
    runs: list[QcRun] = field(default_factory=list)
    problems: list[QcProblem] = field(default_factory=list)


def take_analyser_results(
    session: Session, *, actor: Actor, instrument: str, qc_result_ids: Sequence[int]
) -> IntakeOutcome:
    """Judge the control results an analyser sent in one message (stored in `qc_result`).

    Per test, the levels of one message form one run (a level sent twice starts a second run).
    A result that cannot be judged (unknown control ID or lot, expired or inactive lot, no
    target, wrong unit, not a number, unmapped test) goes to the QC queue with the reason.
    """
    outcome = IntakeOutcome()
    if not qc_result_ids:
        return outcome
    rows = list(
        session.scalars(
            select(QcResult).where(QcResult.id.in_(qc_result_ids)).order_by(QcResult.id)
        )
    )
    name = analyser_name(instrument)
    by_test: dict[int, list[Candidate]] = {}
    lookups = Lookups.load(session, instrument=name, rows=rows)
    for row in rows:
        candidate, reason = candidate_of(lookups, instrument=name, row=row)
        if candidate is None:
            problem = QcProblem(qc_result_id=row.id, reason=reason, status=ProblemStatus.OPEN)
            session.add(problem)
            outcome.problems.append(problem)
            continue
        by_test.setdefault(candidate.target.test_id, []).append(candidate)
    if outcome.problems:
        session.flush()
    for test_id, candidates in by_test.items():
        for group in _split_by_level(candidates):
            key = "a" + str(min(c.qc_result_id or 0 for c in group))
            outcome.runs.append(
                store_run(
                    session,
                    actor=actor,
                    instrument=name,
                    test_id=test_id,
                    candidates=group,
                    run_key=key,
                    source=RunSource.ANALYSER,
                )
            )
    for problem in outcome.problems:
        audit.record(
            session,
            actor=actor,
            action="qc.queue.add",
            entity_type="qc_problem",
            entity_id=problem.id,
            detail=problem.reason,
        )
    return outcome


def _split_by_level(candidates: list[Candidate]) -> list[list[Candidate]]:
    groups: list[list[Candidate]] = []
    for candidate in sorted(candidates, key=lambda c: (c.observed_at, c.qc_result_id or 0)):
        for group in groups:
            if all(c.level != candidate.level for c in group):
                group.append(candidate)
                break
        else:
            groups.append([candidate])
    return groups


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookups:
    """What judging a message's control results needs, read in three queries for all of them:
    the lots their control IDs stand for, their tests, and the targets of those lots."""

    lots: dict[str, QcLot]  # by control ID
    tests: dict[str, LabTest]  # by local code, upper case
    targets: dict[tuple[int, int], QcTarget]  # by (lot, test)

    @classmethod
    def load(cls, session: Session, *, instrument: str, rows: Sequence[QcResult]) -> Lookups:
        lots = materials.lots_for_controls(
            session, instrument=instrument, control_ids={r.control_id for r in rows}
        )
        codes = {r.test_code.strip().upper() for r in rows if r.test_code}
        tests = {
            t.code.upper(): t
            for t in (
                session.scalars(select(LabTest).where(LabTest.code.in_(codes))) if codes else []
            )
        }
        targets = materials.targets_for(
            session,
            instrument=instrument,
            lot_ids={lot.id for lot in lots.values()},
            test_ids={t.id for t in tests.values()},
        )
        return cls(lots=lots, tests=tests, targets=targets)


def candidate_of(
    lookups: Lookups, *, instrument: str, row: QcResult
) -> tuple[Candidate | None, str]:
    """The judgeable form of a stored control result, or why it cannot be judged."""
    observed_at = row.observed_at or row.received_at or utcnow()
    if row.test_code is None:
        return None, (
            f"test code {row.instrument_test_code!r} is not mapped for analyser {instrument}"
        )
    if row.result_status.upper() not in _JUDGEABLE_STATUS:
        return None, f"result status {row.result_status!r} (R-9) is not a result to judge"
    try:
        value = materials.decimal_of(row.value, field="value")
    except InvalidInput:
        return None, f"the control value {row.value!r} is not a number"
    lot = lookups.lots.get(row.control_id.strip())
    if lot is None:
        return None, (
            f"control ID {row.control_id!r} is not mapped to a control lot on analyser {instrument}"
        )
    label = f"lot {lot.lot_number} of {lot.material.name}"
    if lot.expires_on < materials.local_day(observed_at):
        return None, f"{label} expired on {lot.expires_on.isoformat()}"
    if not lot.active:
        return None, f"{label} is not in use"
    test = lookups.tests.get(row.test_code.strip().upper())
    if test is None:
        return None, f"test {row.test_code!r} is not in the catalog"
    target = lookups.targets.get((lot.id, test.id))
    if target is None:
        return None, f"{label} has no target for {test.code} on analyser {instrument}"
    if row.unit.strip() and not materials.same_unit(row.unit, target.unit):
        return None, f"unit {row.unit!r} does not match the target's unit {target.unit!r}"
    return (
        Candidate(
            level=lot.material.level,
            lot_id=lot.id,
            value=value,
            unit=target.unit,
            observed_at=as_utc(observed_at),
            target=target,
            qc_result_id=row.id,
        ),
        "",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualValue:
    lot_id: int
    value: str
    unit: str = ""


def enter_run(
    session: Session,
    *,
    actor: Actor,
    instrument: str,
    test_code: str,
    run_at: datetime,
    values: Sequence[ManualValue],
    comment: str = "",
) -> QcRun:
    """A run typed in by hand (a technician reading the analyser's screen, or a method with no
    interface). Input that cannot be judged is refused with the field named, not queued."""
    name = analyser_name(instrument)
    if not name:
        raise InvalidInput.field("instrument", "name the analyser the controls ran on")
    test = catalog.get_by_code(session, test_code)
    if not values:
        raise InvalidInput.field("values", "enter at least one control level")
    candidates: list[Candidate] = []
    for index, entry in enumerate(values):
        where = f"values.{index}"
        lot = materials.get_lot(session, entry.lot_id)
        label = f"lot {lot.lot_number} of {lot.material.name}"
        if lot.expires_on < materials.local_day(run_at):
            raise InvalidInput.field(f"{where}.lot_id", f"{label} expired on {lot.expires_on}")
        if not lot.active:
            raise InvalidInput.field(f"{where}.lot_id", f"{label} is not in use")
        target = materials.target_for(session, lot_id=lot.id, instrument=name, test_id=test.id)
        if target is None:
            raise InvalidInput.field(
                f"{where}.lot_id", f"{label} has no target for {test.code} on {name}"
            )
        if entry.unit.strip() and not materials.same_unit(entry.unit, target.unit):
            raise InvalidInput.field(
                f"{where}.unit", f"the target of {label} is in {target.unit}, not {entry.unit}"
            )
        if any(c.level == lot.material.level for c in candidates):
            raise InvalidInput.field(f"{where}.lot_id", "a run holds one result per level")
        candidates.append(
            Candidate(
                level=lot.material.level,
                lot_id=lot.id,
                value=materials.decimal_of(entry.value, field=f"{where}.value"),
                unit=target.unit,
                observed_at=as_utc(run_at),
                target=target,
            )
        )
    return store_run(
        session,
        actor=actor,
        instrument=name,
        test_id=test.id,
        candidates=candidates,
        run_key="m" + secrets.token_hex(8),
        source=RunSource.MANUAL,
        comment=comment,
    )


# --- judging and storing a run ------------------------------------------------------------------


def _judgeable(target: QcTarget) -> bool:
    return target.source != TargetSource.ESTABLISHING and bool(target.mean) and bool(target.sd)


def _as_engine_run(run: QcRun) -> westgard.Run | None:
    points = tuple(
        westgard.Point(
            level=p.level, value=float(p.value), mean=float(p.mean), sd=float(p.sd), point_id=p.id
        )
        for p in run.points
        if p.mean is not None and p.sd is not None and p.sd > 0
    )
    return westgard.Run(run_id=run.id, points=points) if points else None


def history_before(
    session: Session, *, instrument: str, test_id: int, run_at: datetime, run_id: int | None
) -> list[westgard.Run]:
    """The accepted runs before this one (oldest first), as many as a rule can look back at.
    A run not stored yet (`run_id` None) comes after every stored run of the same time."""
    before = (
        QcRun.run_at <= run_at
        if run_id is None
        else tuple_(QcRun.run_at, QcRun.id) < tuple_(literal(run_at), literal(run_id))
    )
    runs = session.scalars(
        select(QcRun)
        .where(
            QcRun.instrument == instrument,
            QcRun.test_id == test_id,
            QcRun.status == RunStatus.ACCEPTED,
            before,
        )
        .order_by(QcRun.run_at.desc(), QcRun.id.desc())
        .limit(westgard.HISTORY_RUNS)
        .options(noload(QcRun.violations))
    ).all()
    engine_runs = [_as_engine_run(run) for run in reversed(runs)]
    return [run for run in engine_runs if run is not None]


def _point_json(ref: westgard.PointRef, *, this_run: int) -> dict[str, object]:
    run_id = this_run if ref.run_id == 0 else ref.run_id
    return {"run_id": run_id, "level": ref.level, "z": round(ref.z, 4)}


def store_run(
    session: Session,
    *,
    actor: Actor,
    instrument: str,
    test_id: int,
    candidates: Sequence[Candidate],
    run_key: str,
    source: RunSource,
    comment: str = "",
) -> QcRun:
    """Store a run, judge it, and step the lock; the same run key again returns the first."""
    existing = session.scalar(
        select(QcRun).where(
            QcRun.instrument == instrument, QcRun.test_id == test_id, QcRun.run_key == run_key
        )
    )
    if existing is not None:
        return existing
    run_at = max(c.observed_at for c in candidates)
    targets = [c.target for c in candidates]
    choice = materials.rules_for(session, instrument=instrument, test_id=test_id, targets=targets)
    points = [
        QcPoint(
            level=c.level,
            lot_id=c.lot_id,
            value=c.value,
            unit=c.unit,
            mean=c.target.mean if _judgeable(c.target) else None,
            sd=c.target.sd if _judgeable(c.target) else None,
            z=(
                float((c.value - c.target.mean) / c.target.sd)
                if _judgeable(c.target) and c.target.mean is not None and c.target.sd
                else None
            ),
            qc_result_id=c.qc_result_id,
            excluded=False,
        )
        for c in sorted(candidates, key=lambda c: c.level)
    ]
    # Judged before it is stored: the run and its decision are written once, never updated.
    engine_points = tuple(
        westgard.Point(level=p.level, value=float(p.value), mean=float(p.mean), sd=float(p.sd))
        for p in points
        if p.mean is not None and p.sd is not None and p.sd > 0
    )
    judgement: westgard.Judgement | None = None
    status = RunStatus.ESTABLISHING
    if engine_points:
        history = history_before(
            session, instrument=instrument, test_id=test_id, run_at=run_at, run_id=None
        )
        # The engine names points by run; this run's id is not known yet (0 stands for it).
        judgement = westgard.judge_run(
            westgard.Run(run_id=0, points=engine_points), history, rules=choice.rules
        )
        rejected = judgement.status is westgard.RunStatus.REJECTED
        status = RunStatus.REJECTED if rejected else RunStatus.ACCEPTED
        for point in points:
            point.excluded = rejected
    required = materials.required_levels(session, instrument=instrument, test_id=test_id)
    judged_levels = {p.level for p in points if p.mean is not None}
    run = QcRun(
        instrument=instrument,
        test_id=test_id,
        run_at=run_at,
        run_key=run_key,
        source=source,
        status=status,
        rules_applied=sorted(r.value for r in choice.rules),
        first_rule=judgement.first_rule.value if judgement and judgement.first_rule else "",
        all_levels=bool(required) and required <= judged_levels,
        entered_by=actor.username,
        comment=comment,
        points=points,
        violations=[],
    )
    session.add(run)
    session.flush()
    if judgement is not None and judgement.violations:
        run.violations = [
            QcViolation(
                rule=v.rule.value,
                severity=v.severity.value,
                scope=v.scope.value,
                points=[_point_json(p, this_run=run.id) for p in v.points],
            )
            for v in judgement.violations
        ]
        session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.run",
        entity_type="qc_run",
        entity_id=run.id,
        after={
            "instrument": instrument,
            "test_id": test_id,
            "status": run.status,
            "rules_applied": run.rules_applied,
            "rule_choice": choice.why,
            "violations": [
                {"rule": v.rule, "scope": v.scope, "points": v.points} for v in run.violations
            ],
            "points": [
                {"level": p.level, "lot_id": p.lot_id, "value": str(p.value), "z": p.z}
                for p in points
            ],
        },
    )
    if run.status != RunStatus.ESTABLISHING:
        _note_event(session, actor=actor, instrument=instrument, test_id=test_id, event=_event(run))
    for candidate in candidates:
        if candidate.target.source == TargetSource.ESTABLISHING:
            materials.establish_if_ready(session, actor=actor, target=candidate.target)
    return run


# --- the lock -----------------------------------------------------------------------------------


def _event(run: QcRun) -> qc_lock.QcEvent:
    return qc_lock.QcEvent(
        at=run.run_at,
        sequence=run.id,
        kind=qc_lock.EventKind.RUN,
        rejected=run.status == RunStatus.REJECTED,
        all_levels=run.all_levels,
        rule=run.first_rule,
        run_id=run.id,
    )


def _override_event(override: QcOverride) -> qc_lock.QcEvent:
    return qc_lock.QcEvent(
        at=override.at,
        sequence=override.id,
        kind=qc_lock.EventKind.OVERRIDE,
        run_id=override.locked_by_run_id,
    )


def stored_events(session: Session, *, instrument: str, test_id: int) -> list[qc_lock.QcEvent]:
    """Every judged run and override of a test on an analyser: what the lock is a fold of."""
    runs = session.scalars(
        select(QcRun).where(
            QcRun.instrument == instrument,
            QcRun.test_id == test_id,
            QcRun.status != RunStatus.ESTABLISHING,
        )
    )
    overrides = session.scalars(
        select(QcOverride).where(QcOverride.instrument == instrument, QcOverride.test_id == test_id)
    )
    return [*(_event(r) for r in runs), *(_override_event(o) for o in overrides)]


def _lock_row(session: Session, *, instrument: str, test_id: int) -> QcLock:
    row = session.scalar(
        select(QcLock)
        .where(QcLock.instrument == instrument, QcLock.test_id == test_id)
        .with_for_update()
    )
    if row is None:
        row = QcLock(
            instrument=instrument,
            test_id=test_id,
            state=LockState.IN_CONTROL,
            rule="",
            last_event_sequence=0,
            last_event_kind="",
        )
        session.add(row)
        session.flush()
    return row


def _note_event(
    session: Session, *, actor: Actor, instrument: str, test_id: int, event: qc_lock.QcEvent
) -> QcLock:
    """Step the stored lock by one event; an event older than the last one folded in (a run
    sent late) refolds the lock from every stored event, so the row always equals the fold."""
    row = _lock_row(session, instrument=instrument, test_id=test_id)
    before = qc_lock.Lock(
        state=qc_lock.LockState(row.state), rule=row.rule, run_id=row.run_id, since=row.since
    )
    last = (
        None
        if row.last_event_at is None
        else (row.last_event_at, row.last_event_sequence, row.last_event_kind)
    )
    if last is None or qc_lock.order_key(event) > last:
        after = qc_lock.step(before, event)
        newest = event
    else:
        events = stored_events(session, instrument=instrument, test_id=test_id)
        after = qc_lock.fold(events)
        newest = max(events, key=qc_lock.order_key)
    row.state = after.state.value
    row.rule = after.rule
    row.run_id = after.run_id
    row.since = after.since
    row.last_event_at, row.last_event_sequence, row.last_event_kind = qc_lock.order_key(newest)
    session.flush()
    if after.state is not before.state:
        audit.record(
            session,
            actor=actor,
            action="qc.lock" if after.locked else "qc.unlock",
            entity_type="qc_lock",
            entity_id=row.id,
            before={"state": before.state.value, "rule": before.rule, "run_id": before.run_id},
            after={"state": after.state.value, "rule": after.rule, "run_id": after.run_id},
            detail=f"{instrument} test {test_id}",
        )
    return row


def override_lock(
    session: Session, *, actor: Actor, instrument: str, test_code: str, reason: str
) -> QcLock:
    """Release a lock without an in-control run: a documented decision of a person whose role
    may (the caller checks the permission). The reason is required and kept."""
    name = analyser_name(instrument)
    test = catalog.get_by_code(session, test_code)
    reason = reason.strip()
    if len(reason) < 10:
        raise InvalidInput.field("reason", "say why the lock is released (at least 10 characters)")
    row = _lock_row(session, instrument=name, test_id=test.id)
    if row.state != LockState.LOCKED:
        raise Conflict(f"{test.code} is not locked on {name}")
    now = utcnow()
    # The override releases the lock as it stands, so it sorts after every event folded in,
    # even one stamped ahead of this clock (an analyser clock running fast).
    last = row.last_event_at
    at = now if last is None or last < now else last + timedelta(microseconds=1)
    override = QcOverride(
        instrument=name,
        test_id=test.id,
        at=at,
        locked_by_run_id=row.run_id,
        person=actor.username,
        reason=reason,
    )
    session.add(override)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="qc.override",
        entity_type="qc_override",
        entity_id=override.id,
        after={"instrument": name, "test": test.code, "locked_by_run_id": row.run_id},
        detail=reason,
    )
    return _note_event(
        session, actor=actor, instrument=name, test_id=test.id, event=_override_event(override)
    )


def lock_of(session: Session, *, instrument: str, test_id: int) -> QcLock | None:
    return session.scalar(
        select(QcLock).where(
            QcLock.instrument == analyser_name(instrument), QcLock.test_id == test_id
        )
    )
