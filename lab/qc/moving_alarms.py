"""Patient-based QC alarms: the moving statistic of each test and analyser checked on a
schedule, and each drift stored (`qc_moving_alarm`) and audited.

`check` looks at every active moving setting; a setting for every analyser (`ANY_ANALYSER`) is
applied to each analyser that measured the test in the last `RECENT` days. When the statistic of
the last block is outside its control limits and no alarm is open, one is raised; when it is
back inside, the open alarm is cleared. The QC page and `GET /api/v1/qc/status` show the open
alarm with the Westgard state. It runs every minute from `lab serve` (`lab.qc.runtime`), off the
recording path, so recording a result costs nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.qc import queries
from lab.qc.materials import analyser_name
from lab.tables import LabTest, Result, ResultVersion
from lab.tables.qc import ANY_ANALYSER, QcMovingAlarm, QcMovingSetting

RECENT = timedelta(days=7)
_CALCULATED = "calculated"  # a calculated result is measured by no analyser


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmChange:
    instrument: str
    test_code: str
    raised: bool  # True: raised now; False: cleared now
    value: float


def _analysers(session: Session, test_id: int, now: datetime) -> list[str]:
    """The analysers that measured the test lately (the part of `name/module` before `/`)."""
    name = func.split_part(ResultVersion.instrument, "/", 1)
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


def open_alarm(session: Session, *, instrument: str, test_id: int) -> QcMovingAlarm | None:
    return session.scalar(
        select(QcMovingAlarm).where(
            QcMovingAlarm.instrument == analyser_name(instrument),
            QcMovingAlarm.test_id == test_id,
            QcMovingAlarm.cleared_at.is_(None),
        )
    )


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
            status = queries.moving_status(session, instrument=analyser, test_id=setting.test_id)
            if status is None or status.current is None:
                continue
            current = open_alarm(session, instrument=analyser, test_id=setting.test_id)
            code = codes.get(setting.test_id, str(setting.test_id))
            if status.state == "alarm" and current is None:
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
            elif status.state == "in_control" and current is not None:
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
