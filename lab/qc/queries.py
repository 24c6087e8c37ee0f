"""QC as it is read: the state per test on an analyser (with the patient-based QC of
`lab.qc.moving_alarms`), chart series, the look-back list and the locks and alarms open now.
No changes here, except the audit rows of patient data read (look-back)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.errors import NotFound
from lab.qc import westgard
from lab.qc.materials import analyser_name, rules_for, targets_in_use
from lab.qc.moving_alarms import MovingStatus, OpenAlarm, moving_status, open_alarms
from lab.tables.catalog import LabTest
from lab.tables.qc import (
    LockState,
    QcLock,
    QcLot,
    QcPoint,
    QcRun,
    QcTarget,
    QcViolation,
    RunStatus,
    TargetSource,
)
from lab.tables.results import RELEASED, Result, ResultVersion
from lab.tables.specimens import Specimen


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelInUse:
    level: int
    material: str
    lot: str
    expires_on: str
    mean: Decimal | None
    sd: Decimal | None
    unit: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TestQcStatus:
    test_code: str
    test_id: int
    state: str  # in_control | locked
    rule: str  # the rule that locked it ("" when in control)
    since: datetime | None
    locked_by_run_id: int | None
    last_run_at: datetime | None
    last_run_status: str
    rules_applied: list[str]
    rule_choice: str
    levels: list[LevelInUse] = field(default_factory=list)
    moving: MovingStatus | None = None


def status(session: Session, *, instrument: str) -> list[TestQcStatus]:
    """Every test controlled on the analyser (a target in use or a lock row), in code order."""
    name = analyser_name(instrument)
    targets = targets_in_use(session, instrument=name)
    locks = {
        row.test_id: row for row in session.scalars(select(QcLock).where(QcLock.instrument == name))
    }
    test_ids = sorted({t.test_id for t in targets} | set(locks))
    tests = {t.id: t for t in session.scalars(select(LabTest).where(LabTest.id.in_(test_ids)))}
    found: list[TestQcStatus] = []
    for test_id in sorted(test_ids, key=lambda i: tests[i].code):
        mine = [t for t in targets if t.test_id == test_id]
        lock = locks.get(test_id)
        last = session.scalars(
            select(QcRun)
            .where(QcRun.instrument == name, QcRun.test_id == test_id)
            .order_by(QcRun.run_at.desc(), QcRun.id.desc())
            .limit(1)
        ).first()
        choice = rules_for(session, instrument=name, test_id=test_id, targets=mine)
        locked = lock is not None and lock.state == LockState.LOCKED
        found.append(
            TestQcStatus(
                test_code=tests[test_id].code,
                test_id=test_id,
                state=LockState.LOCKED if locked else LockState.IN_CONTROL,
                rule=lock.rule if lock is not None and locked else "",
                since=lock.since if lock is not None else None,
                locked_by_run_id=lock.run_id if lock is not None and locked else None,
                last_run_at=last.run_at if last else None,
                last_run_status=last.status if last else "",
                rules_applied=sorted(r.value for r in choice.rules),
                rule_choice=choice.why,
                levels=[
                    LevelInUse(
                        level=t.lot.material.level,
                        material=t.lot.material.name,
                        lot=t.lot.lot_number,
                        expires_on=t.lot.expires_on.isoformat(),
                        mean=t.mean,
                        sd=t.sd,
                        unit=t.unit,
                        source=t.source,
                    )
                    for t in mine
                ],
                moving=moving_status(
                    session, instrument=name, test_id=test_id, test_code=tests[test_id].code
                ),
            )
        )
    return found


# --- chart series -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartPoint:
    run_id: int
    at: datetime
    value: float
    z: float | None
    rejected: bool
    rules: tuple[str, ...]  # the rules that fired on this point (warnings included)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartSeries:
    instrument: str
    test_code: str
    unit: str
    level: int
    material: str
    lot: str
    lot_id: int
    mean: float | None
    sd: float | None
    target_source: str
    points: list[ChartPoint]
    accepted: westgard.Statistics | None  # of the accepted points shown (rejected left out)


def chart_lots(
    session: Session, *, instrument: str, test_code: str, test: LabTest | None = None
) -> list[QcLot]:
    """The lots that have points for a test on an analyser, newest first (each lot's points
    are looked at until the first of this test on this analyser, not all of them)."""
    test = test or catalog.get_by_code(session, test_code)
    has_points = (
        select(QcPoint.id)
        .join(QcRun, QcRun.id == QcPoint.run_id)
        .where(
            QcPoint.lot_id == QcLot.id,
            QcRun.instrument == analyser_name(instrument),
            QcRun.test_id == test.id,
        )
        .exists()
    )
    return list(session.scalars(select(QcLot).where(has_points).order_by(QcLot.id.desc())))


def chart_series(
    session: Session,
    *,
    instrument: str,
    test_code: str,
    lot_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 120,
    test: LabTest | None = None,
    in_use: Sequence[QcTarget] | None = None,
) -> ChartSeries:
    """The points of one lot (so one level) of a test on an analyser, oldest first: the last
    `limit` runs up to `until`, or every run between `since` and `until`. One query for the
    points with their runs' decisions (plain rows); a caller drawing several lots passes the
    test and the targets in use it has read already."""
    name = analyser_name(instrument)
    test = test or catalog.get_by_code(session, test_code)
    lot = session.get(QcLot, lot_id)
    if lot is None:
        raise NotFound(f"no control lot {lot_id}")
    decisions = (
        select(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(QcViolation.rule, QcViolation.points), QcViolation.id
                )
            )
        )
        .where(QcViolation.run_id == QcRun.id)
        .correlate(QcRun)
        .scalar_subquery()
    )
    query = (
        select(
            QcPoint.level,
            QcPoint.value,
            QcPoint.z,
            QcPoint.mean,
            QcPoint.sd,
            QcRun.id,
            QcRun.run_at,
            QcRun.status,
            decisions.label("decisions"),
        )
        .join(QcRun, QcRun.id == QcPoint.run_id)
        .where(QcRun.instrument == name, QcRun.test_id == test.id, QcPoint.lot_id == lot_id)
        .order_by(QcRun.run_at.desc(), QcRun.id.desc())
    )
    if since is not None:
        query = query.where(QcRun.run_at >= since)
    if until is not None:
        query = query.where(QcRun.run_at <= until)
    if since is None:
        query = query.limit(limit)
    rows = list(reversed(session.execute(query).all()))
    fired: dict[tuple[int, int], list[str]] = {}
    for row in rows:
        for rule, refs in row.decisions or []:
            for ref in refs:
                key = (int(ref["run_id"]), int(ref["level"]))
                fired.setdefault(key, []).append(rule)
    if in_use is None:
        in_use = targets_in_use(session, instrument=name, test_id=test.id)
    target = next((t for t in in_use if t.lot_id == lot_id and t.test_id == test.id), None)
    points = [
        ChartPoint(
            run_id=row.id,
            at=row.run_at,
            value=float(row.value),
            z=row.z,
            rejected=row.status == RunStatus.REJECTED,
            rules=tuple(dict.fromkeys(fired.get((row.id, row.level), []))),
        )
        for row in rows
    ]
    mean = float(target.mean) if target is not None and target.mean is not None else None
    sd = float(target.sd) if target is not None and target.sd is not None else None
    if mean is None and rows:  # the lot's target is no longer in use: the one the points had
        last_judged = next((r for r in reversed(rows) if r.mean is not None), None)
        if last_judged is not None and last_judged.sd is not None:
            mean, sd = float(last_judged.mean or 0), float(last_judged.sd)
    return ChartSeries(
        instrument=name,
        test_code=test.code,
        unit=target.unit if target is not None else (test.unit or ""),
        level=lot.material.level,
        material=lot.material.name,
        lot=lot.lot_number,
        lot_id=lot.id,
        mean=mean,
        sd=sd,
        target_source=target.source if target is not None else TargetSource.ENTERED,
        points=points,
        accepted=westgard.lot_statistics([p.value for p in points if not p.rejected]),
    )


# --- look-back ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LookBackResult:
    result_id: int
    accession_number: str
    value: str
    unit: str
    status: str
    observed_at: datetime | None
    verified_at: datetime | None
    verified_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LookBack:
    since: datetime | None  # the last accepted run of every level before the rejection
    rejected_at: datetime | None
    results: list[LookBackResult]


def look_back(
    session: Session, *, actor: Actor, instrument: str, test_code: str, limit: int = 500
) -> LookBack:
    """Patient results of a locked test on the analyser, released since its last accepted run
    of every level before the rejection (bracketed QC, CLSI C24): to be rechecked. Reading them
    is audited per patient."""
    name = analyser_name(instrument)
    test = catalog.get_by_code(session, test_code)
    lock = session.scalar(
        select(QcLock).where(QcLock.instrument == name, QcLock.test_id == test.id)
    )
    if lock is None or lock.state != LockState.LOCKED or lock.run_id is None:
        return LookBack(since=None, rejected_at=None, results=[])
    rejected = session.get(QcRun, lock.run_id)
    rejected_at = rejected.run_at if rejected is not None else lock.since
    before_rejection = select(QcRun).where(
        QcRun.instrument == name,
        QcRun.test_id == test.id,
        QcRun.status == RunStatus.ACCEPTED,
        QcRun.all_levels.is_(True),
    )
    if rejected_at is not None:
        before_rejection = before_rejection.where(QcRun.run_at < rejected_at)
    last_good = session.scalars(
        before_rejection.order_by(QcRun.run_at.desc(), QcRun.id.desc()).limit(1)
    ).first()
    since = last_good.run_at if last_good is not None else None
    version = ResultVersion
    query = (
        select(Result, version, Specimen.accession_number)
        .join(
            version,
            (version.result_id == Result.id) & (version.version == Result.version),
        )
        .join(Specimen, Specimen.id == Result.specimen_id)
        .where(
            Result.test_id == test.id,
            Result.status.in_([s.value for s in RELEASED]),
            (version.instrument == name) | version.instrument.like(f"{name}/%"),
        )
        .order_by(Result.observed_at, Result.id)
        .limit(limit)
    )
    if since is not None:
        query = query.where(Result.observed_at >= since)
    rows = session.execute(query).tuples().all()
    audit.record_rows(
        session,
        [
            audit.row(
                actor=actor,
                action="read.result",
                entity_type="result",
                entity_id=result.id,
                patient_id=result.patient_id,
                detail=f"QC look-back {test.code} on {name}",
            )
            for result, _, _ in rows
        ],
    )
    return LookBack(
        since=since,
        rejected_at=rejected_at,
        results=[
            LookBackResult(
                result_id=result.id,
                accession_number=accession,
                value=_value_text(result),
                unit=result.unit or "",
                status=result.status,
                observed_at=result.observed_at,
                verified_at=result.verified_at,
                verified_by=result.verified_by,
            )
            for result, _, accession in rows
        ],
    )


def _value_text(result: Result) -> str:
    if result.value_numeric is not None:
        return f"{result.comparator or ''}{result.value_numeric}"
    return result.value_text or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveLock:
    instrument: str
    test_code: str
    rule: str
    since: datetime | None


def active_alarms(session: Session) -> list[OpenAlarm]:
    """Every patient-based QC alarm open now, on every analyser (beside the locks)."""
    return open_alarms(session)


def active_locks(session: Session) -> list[ActiveLock]:
    """Every test locked by QC now, on every analyser (for the overview and the worklist)."""
    query = (
        select(QcLock, LabTest.code)
        .join(LabTest, LabTest.id == QcLock.test_id)
        .where(QcLock.state == LockState.LOCKED)
        .order_by(QcLock.instrument, LabTest.code)
    )
    return [
        ActiveLock(instrument=lock.instrument, test_code=code, rule=lock.rule, since=lock.since)
        for lock, code in session.execute(query).tuples()
    ]
