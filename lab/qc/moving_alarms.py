"""Patient-based QC in one place: which patient results form the window (`patient_values`), the
statistic of the last block and its state (`moving_status`), the stored alarms (`open_alarm`,
`open_alarms`) and the scheduled check that raises and clears them (`check`); the statistic
itself is `lab.qc.moving` (pure).

`check` looks at every active moving setting; a setting for every analyser (`ANY_ANALYSER`) is
applied to each analyser that measured the test in the last `RECENT` days. When the statistic of
the last block is outside its control limits and no alarm is open, one is raised; when it is
back inside, the open alarm is cleared. The QC page, the lock banner of the overview and the
worklist, and `GET /api/v1/qc/status` show the open alarm with the Westgard state. It runs every
minute from `lab serve` (`lab.qc.runtime`), off the recording path, so recording a result costs
nothing for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.qc import moving
from lab.qc.materials import analyser_name
from lab.tables import LabTest, Result, ResultVersion
from lab.tables.qc import ANY_ANALYSER, QcMovingAlarm, QcMovingSetting

RECENT = timedelta(days=7)
_CALCULATED = "calculated"  # a calculated result is measured by no analyser


def _analyser_of(instrument: Any) -> Any:
    """SQL: the analyser of a result version's `instrument` (`name/module` -> `name`), as
    `materials.analyser_name` does in Python."""
    return func.split_part(instrument, "/", 1)


# --- the window: the last patient results of a test on an analyser ------------------------------


def moving_setting(session: Session, *, instrument: str, test_id: int) -> QcMovingSetting | None:
    """The active setting of a test on the analyser: its own before the one for every analyser."""
    return session.scalars(
        select(QcMovingSetting)
        .where(
            QcMovingSetting.test_id == test_id,
            QcMovingSetting.active.is_(True),
            QcMovingSetting.instrument.in_([analyser_name(instrument), ANY_ANALYSER]),
        )
        .order_by(QcMovingSetting.instrument.desc())
    ).first()


def settings_of(row: QcMovingSetting) -> moving.MovingSettings:
    return moving.MovingSettings(
        statistic=moving.Statistic(row.statistic),
        block_size=row.block_size,
        truncation_low=float(row.truncation_low),
        truncation_high=float(row.truncation_high),
        control_low=float(row.control_low),
        control_high=float(row.control_high),
    )


def patient_values(
    session: Session,
    *,
    instrument: str,
    test_id: int,
    count: int,
    within: tuple[Decimal, Decimal] | None = None,
) -> Sequence[float]:
    """The last `count` numeric patient results of a test measured on the analyser, oldest
    first (any status but cancelled: the method's output, reviewed or not), only those inside
    `within` (the truncation limits) when given. No patient is named: only the values leave
    this function."""
    version = ResultVersion
    query = (
        select(Result.value_numeric)
        .join(version, (version.result_id == Result.id) & (version.version == Result.version))
        .where(
            Result.test_id == test_id,
            Result.value_numeric.is_not(None),
            Result.comparator.is_(None),
            Result.status != "cancelled",
            _analyser_of(version.instrument) == analyser_name(instrument),
        )
        .order_by(Result.observed_at.desc().nulls_last(), Result.id.desc())
        .limit(count)
    )
    if within is not None:
        query = query.where(Result.value_numeric.between(*within))
    return [float(v) for v in reversed(session.scalars(query).all()) if v is not None]


def _analysers(session: Session, test_id: int, now: datetime) -> list[str]:
    """The analysers that measured the test in the last `RECENT` days."""
    name = _analyser_of(ResultVersion.instrument)
    rows = session.scalars(
        select(name)
        .distinct()
        .join(Result, (Result.id == ResultVersion.result_id))
        .where(
            Result.test_id == test_id,
            Result.recorded_at >= now - RECENT,
            ResultVersion.version == Result.version,
            ResultVersion.instrument != "",
            ResultVersion.instrument != _CALCULATED,
        )
    ).all()
    return sorted(str(row) for row in rows if row)


# --- the state and the stored alarm -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAlarm:
    """A stored alarm not cleared yet, with the figures in force when it was raised."""

    instrument: str
    test_code: str
    since: datetime
    statistic: str
    value: float
    block_size: int
    control_low: Decimal
    control_high: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MovingStatus:
    statistic: str
    block_size: int
    state: str
    current: float | None
    control_low: Decimal
    control_high: Decimal
    # The stored alarm still open (raised and cleared by `check` on a schedule).
    alarm_since: datetime | None = None
    alarm_value: float | None = None
    alarm: OpenAlarm | None = None


def open_alarm(session: Session, *, instrument: str, test_id: int) -> QcMovingAlarm | None:
    return session.scalar(
        select(QcMovingAlarm).where(
            QcMovingAlarm.instrument == analyser_name(instrument),
            QcMovingAlarm.test_id == test_id,
            QcMovingAlarm.cleared_at.is_(None),
        )
    )


def _open(alarm: QcMovingAlarm, test_code: str) -> OpenAlarm:
    return OpenAlarm(
        instrument=alarm.instrument,
        test_code=test_code,
        since=alarm.raised_at,
        statistic=alarm.statistic,
        value=alarm.value,
        block_size=alarm.block_size,
        control_low=alarm.control_low,
        control_high=alarm.control_high,
    )


def open_alarms(session: Session) -> list[OpenAlarm]:
    """Every alarm open now, on every analyser (for the banner beside the QC locks)."""
    query = (
        select(QcMovingAlarm, LabTest.code)
        .join(LabTest, LabTest.id == QcMovingAlarm.test_id)
        .where(QcMovingAlarm.cleared_at.is_(None))
        .order_by(QcMovingAlarm.instrument, LabTest.code)
    )
    return [_open(alarm, code) for alarm, code in session.execute(query).tuples()]


def moving_status(
    session: Session, *, instrument: str, test_id: int, test_code: str = ""
) -> MovingStatus | None:
    """The statistic of the last block of results inside the truncation limits, its state, and
    the stored alarm still open."""
    row = moving_setting(session, instrument=instrument, test_id=test_id)
    if row is None:
        return None
    values = patient_values(
        session,
        instrument=instrument,
        test_id=test_id,
        count=row.block_size,
        within=(row.truncation_low, row.truncation_high),
    )
    series = moving.moving_series(values, settings_of(row))
    alarm = open_alarm(session, instrument=instrument, test_id=test_id)
    return MovingStatus(
        statistic=row.statistic,
        block_size=row.block_size,
        state=series.state.value,
        current=series.current,
        control_low=row.control_low,
        control_high=row.control_high,
        alarm_since=alarm.raised_at if alarm is not None else None,
        alarm_value=alarm.value if alarm is not None else None,
        alarm=_open(alarm, test_code) if alarm is not None else None,
    )


# --- the scheduled check ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmChange:
    instrument: str
    test_code: str
    raised: bool  # True: raised now; False: cleared now
    value: float


def check(session: Session, *, now: datetime, actor: Actor | None = None) -> list[AlarmChange]:
    """Raise or clear the alarm of every test and analyser with patient-based QC."""
    actor = actor or Actor.system("qc-moving")
    changes: list[AlarmChange] = []
    settings = session.scalars(
        select(QcMovingSetting).where(QcMovingSetting.active.is_(True)).order_by(QcMovingSetting.id)
    ).all()
    codes = dict(session.execute(select(LabTest.id, LabTest.code)).tuples().all())
    done: set[tuple[str, int]] = set()
    # An analyser's own setting before the one for every analyser (it wins).
    for setting in sorted(settings, key=lambda s: s.instrument == ANY_ANALYSER):
        analysers = (
            [setting.instrument]
            if setting.instrument != ANY_ANALYSER
            else _analysers(session, setting.test_id, now)
        )
        for analyser in analysers:
            if (analyser, setting.test_id) in done:
                continue
            done.add((analyser, setting.test_id))
            status = moving_status(session, instrument=analyser, test_id=setting.test_id)
            if status is None or status.current is None:
                continue
            current = open_alarm(session, instrument=analyser, test_id=setting.test_id)
            code = codes.get(setting.test_id, str(setting.test_id))
            if status.state == moving.MovingState.ALARM and current is None:
                alarm = QcMovingAlarm(
                    instrument=analyser,
                    test_id=setting.test_id,
                    setting_id=setting.id,
                    statistic=setting.statistic,
                    block_size=setting.block_size,
                    control_low=setting.control_low,
                    control_high=setting.control_high,
                    value=status.current,
                    raised_at=now,
                )
                session.add(alarm)
                session.flush()
                audit.record(
                    session,
                    actor=actor,
                    action="qc.moving.alarm",
                    entity_type="qc_moving_alarm",
                    entity_id=alarm.id,
                    after={
                        "instrument": analyser,
                        "test": code,
                        "statistic": setting.statistic,
                        "value": status.current,
                        "control_low": str(setting.control_low),
                        "control_high": str(setting.control_high),
                    },
                )
                changes.append(
                    AlarmChange(
                        instrument=analyser, test_code=code, raised=True, value=status.current
                    )
                )
            elif status.state == moving.MovingState.IN_CONTROL and current is not None:
                current.cleared_at, current.cleared_value = now, status.current
                session.flush()
                audit.record(
                    session,
                    actor=actor,
                    action="qc.moving.clear",
                    entity_type="qc_moving_alarm",
                    entity_id=current.id,
                    after={"instrument": analyser, "test": code, "value": status.current},
                )
                changes.append(
                    AlarmChange(
                        instrument=analyser, test_code=code, raised=False, value=status.current
                    )
                )
    return changes
