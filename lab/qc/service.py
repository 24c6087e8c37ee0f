"""QC runs: take control results in, judge them by the Westgard rules, lock and unlock tests.

The one question the results ask of QC is `is_locked` (or `locked_tests` for a tube): a patient
result of a locked test on that analyser is held with reason `qc`. A run is judged when it is
stored, against the accepted runs before it (`westgard.judge_run`); a rejection locks the test on
that analyser at once, an accepted run of every level or a person's documented override unlocks
it (`lab.qc.lock`). Everything is audited.

The locked tests are part of the stamp of rarely changing facts (`lab.facts`) each transaction
reads once: asking costs no statement of its own. Whatever writes a lock row here forgets the
transaction's stamp, so the transaction's next question sees its own change.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session, make_transient_to_detached, noload

from lab import audit, facts
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.errors import Conflict, InvalidInput
from lab.qc import judging, materials, westgard
from lab.qc import lock as qc_lock
from lab.qc.judging import Candidate, Target
from lab.qc.materials import analyser_name
from lab.tables.qc import (
    LockState,
    ProblemStatus,
    QcLock,
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

__all__ = ["Candidate", "IntakeOutcome", "ManualValue", "Target"]


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
    locked = _locked_by_analyser(facts.stamp(session).locks).get(name)
    return frozenset(codes & locked) if locked else frozenset()


@lru_cache(maxsize=64)
def _locked_by_analyser(locks: str) -> Mapping[str, frozenset[str]]:
    """The stamp's locked tests by analyser name (test codes as the catalog writes them)."""
    found: dict[str, set[str]] = {}
    for line in locks.split(facts.ROW) if locks else ():
        name, code = line.split(facts.FIELD)
        found.setdefault(name, set()).add(code)
    return MappingProxyType({name: frozenset(codes) for name, codes in found.items()})


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
    session.flush()  # the statements below read the tables, not the session
    name = analyser_name(instrument)
    by_test: dict[int, list[Candidate]] = {}
    for item in judging.read_results(session, instrument=name, ids=qc_result_ids):
        if item.candidate is None:
            problem = QcProblem(
                qc_result_id=item.qc_result_id, reason=item.reason, status=ProblemStatus.OPEN
            )
            session.add(problem)
            outcome.problems.append(problem)
            continue
        by_test.setdefault(item.candidate.target.test_id, []).append(item.candidate)
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
                target=Target.of(target),
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
    A run not stored yet (`run_id` None) comes after every stored run of the same time.
    (Judging a new run reads the same runs with `judging.read_context`.)"""
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


def _judged(target: Target) -> bool:
    return target.judgeable and target.sd is not None and target.sd > 0


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
    """Store a run, judge it, and step the lock; the same run key again returns the first.

    Three statements in all (`lab.qc.judging`): what judging needs, then the run with its
    points, decisions, audit row and lock written at once. The run is judged before it is
    stored: the run and its decision are written once, never updated."""
    run_at = max(c.observed_at for c in candidates)
    context = judging.read_context(
        session, instrument=instrument, test_id=test_id, run_key=run_key, run_at=run_at
    )
    if context.existing_run_id is not None:
        existing = session.get(QcRun, context.existing_run_id)
        assert existing is not None
        return existing
    run_id = context.run_id
    choice = materials.choose_rules(
        rules=context.policy_rules,
        tea_percent=context.tea_percent,
        bias_percent=context.bias_percent,
        spreads=[(c.target.mean, c.target.sd) for c in candidates],
    )
    ordered = sorted(candidates, key=lambda c: c.level)
    engine_points = tuple(
        westgard.Point(
            level=c.level,
            value=float(c.value),
            mean=float(c.target.mean or 0),
            sd=float(c.target.sd or 0),
        )
        for c in ordered
        if _judged(c.target)
    )
    judgement: westgard.Judgement | None = None
    status = RunStatus.ESTABLISHING
    if engine_points:
        # The engine names points by run; this run's id is drawn but 0 stands for it there.
        judgement = westgard.judge_run(
            westgard.Run(run_id=0, points=engine_points), context.history, rules=choice.rules
        )
        rejected = judgement.status is westgard.RunStatus.REJECTED
        status = RunStatus.REJECTED if rejected else RunStatus.ACCEPTED
    judged_levels = {c.level for c in ordered if _judged(c.target)}
    first_rule = judgement.first_rule.value if judgement and judgement.first_rule else ""
    run_values: dict[str, Any] = {
        "id": run_id,
        "instrument": instrument,
        "test_id": test_id,
        "run_at": run_at,
        "run_key": run_key,
        "source": source,
        "status": status,
        "rules_applied": sorted(r.value for r in choice.rules),
        "first_rule": first_rule,
        "all_levels": bool(context.required_levels) and context.required_levels <= judged_levels,
        "entered_by": actor.username,
        "comment": comment,
    }
    point_values: list[dict[str, Any]] = [
        {
            "run_id": run_id,
            "level": c.level,
            "lot_id": c.lot_id,
            "value": c.value,
            "unit": c.unit,
            "mean": c.target.mean if _judged(c.target) else None,
            "sd": c.target.sd if _judged(c.target) else None,
            "z": (
                float((c.value - c.target.mean) / c.target.sd)
                if _judged(c.target) and c.target.mean is not None and c.target.sd
                else None
            ),
            "qc_result_id": c.qc_result_id,
            "excluded": status == RunStatus.REJECTED,
        }
        for c in ordered
    ]
    violation_values: list[dict[str, Any]] = [
        {
            "run_id": run_id,
            "rule": v.rule.value,
            "severity": v.severity.value,
            "scope": v.scope.value,
            "points": [_point_json(p, this_run=run_id) for p in v.points],
        }
        for v in (judgement.violations if judgement is not None else ())
    ]
    audit_rows = [
        audit.row(
            actor=actor,
            action="qc.run",
            entity_type="qc_run",
            entity_id=run_id,
            after={
                "instrument": instrument,
                "test_id": test_id,
                "status": status,
                "rules_applied": run_values["rules_applied"],
                "rule_choice": choice.why,
                "violations": [
                    {"rule": v["rule"], "scope": v["scope"], "points": v["points"]}
                    for v in violation_values
                ],
                "points": [
                    {
                        "level": p["level"],
                        "lot_id": p["lot_id"],
                        "value": str(p["value"]),
                        "z": p["z"],
                    }
                    for p in point_values
                ],
            },
        )
    ]
    event: qc_lock.QcEvent | None = None
    lock_write: judging.LockWrite | None = None
    lock_audit: dict[str, Any] | None = None
    if status != RunStatus.ESTABLISHING:
        event = qc_lock.QcEvent(
            at=run_at,
            sequence=run_id,
            kind=qc_lock.EventKind.RUN,
            rejected=status == RunStatus.REJECTED,
            all_levels=run_values["all_levels"],
            rule=first_rule,
            run_id=run_id,
        )
        if context.last_event is None or qc_lock.order_key(event) > context.last_event:
            after = qc_lock.step(context.lock, event)
            lock_write = judging.LockWrite(
                instrument=instrument,
                test_id=test_id,
                lock_id=context.lock_id,
                after=after,
                newest=qc_lock.order_key(event),
            )
            if after.state is not context.lock.state:
                lock_audit = _lock_audit_row(
                    actor=actor,
                    instrument=instrument,
                    test_id=test_id,
                    lock_id=context.lock_id,
                    before=context.lock,
                    after=after,
                )
                if context.lock_id is not None:
                    audit_rows.append(lock_audit)
                    lock_audit = None
    written = judging.write_run(
        session,
        run=run_values,
        points=point_values,
        violations=violation_values,
        audit_rows=audit_rows,
        lock=lock_write,
    )
    if lock_write is not None:
        facts.forget(session)  # this transaction's next question sees the lock as written
    if lock_audit is not None:  # the lock row was new: its id is known now
        lock_audit["entity_id"] = str(written.lock_id)
        audit.record_rows(session, [lock_audit])
    if event is not None and lock_write is None:
        # A run sent late (older than the last event folded in): refold from the stored events.
        _note_event(session, actor=actor, instrument=instrument, test_id=test_id, event=event)
    for candidate in candidates:
        if candidate.target.source == TargetSource.ESTABLISHING:
            target = session.get(QcTarget, candidate.target.id)
            if target is not None:
                materials.establish_if_ready(session, actor=actor, target=target)
    return _as_stored(run_values, point_values, violation_values, written, session=session)


def _lock_audit_row(
    *,
    actor: Actor,
    instrument: str,
    test_id: int,
    lock_id: int | None,
    before: qc_lock.Lock,
    after: qc_lock.Lock,
) -> dict[str, Any]:
    return audit.row(
        actor=actor,
        action="qc.lock" if after.locked else "qc.unlock",
        entity_type="qc_lock",
        entity_id=lock_id,
        before={"state": before.state.value, "rule": before.rule, "run_id": before.run_id},
        after={"state": after.state.value, "rule": after.rule, "run_id": after.run_id},
        detail=f"{instrument} test {test_id}",
    )


def _as_stored(
    run_values: dict[str, Any],
    point_values: list[dict[str, Any]],
    violation_values: list[dict[str, Any]],
    written: judging.Written,
    *,
    session: Session,
) -> QcRun:
    """The run just written as an ORM object in the session, as if read back (without a read)."""
    run = QcRun(**run_values, judged_at=written.judged_at)
    run.points = [QcPoint(id=written.point_ids[p["level"]], **p) for p in point_values]
    run.violations = [
        QcViolation(id=violation_id, **v)
        for violation_id, v in zip(written.violation_ids, violation_values, strict=True)
    ]
    for stored in (*run.points, *run.violations, run):
        make_transient_to_detached(stored)
    session.add(run)
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
    facts.forget(session)  # this transaction's next question sees the lock as written
    if after.state is not before.state:
        audit.record_rows(
            session,
            [
                _lock_audit_row(
                    actor=actor,
                    instrument=instrument,
                    test_id=test_id,
                    lock_id=row.id,
                    before=before,
                    after=after,
                )
            ],
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
