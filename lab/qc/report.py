"""Chart and report data from the stored runs, in the plain shapes `lab.reports` draws."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from lab.qc import queries
from lab.qc.actions import actions_between
from lab.qc.lock_history import LockEntry, changes_between
from lab.reports.qc_charts import ChartPoint, LeveyJennings
from lab.reports.qc_report import QcAction, QcReport, QcReportSection, RejectedRun
from lab.tables.catalog import LabTest
from lab.tables.instruments import QcResult
from lab.tables.qc import (
    ProblemStatus,
    QcMovingAlarm,
    QcOverride,
    QcPoint,
    QcProblem,
    QcRun,
)
from lab.timeutil import OSLO, oslo_text, utcnow


def chart_of(series: queries.ChartSeries) -> LeveyJennings:
    """A Levey-Jennings chart of a series: rejected points marked, the rule named beside them
    (on a rejected point the rules that rejected the run; on an accepted one its warning)."""
    points = tuple(
        ChartPoint(
            at=p.at,
            value=p.value,
            rejected=p.rejected,
            label=", ".join(
                [r for r in p.rules if r != "1-2s"] if p.rejected and len(p.rules) > 1 else p.rules
            ),
        )
        for p in series.points
    )
    return LeveyJennings(
        title=f"{series.test_code} · {series.instrument} · level {series.level} · lot {series.lot}",
        unit=series.unit,
        mean=series.mean,
        sd=series.sd,
        points=points,
    )


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The first and last moment of a calendar month in the lab's time zone."""
    start = datetime.combine(month.replace(day=1), time.min, tzinfo=OSLO)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    end = datetime.combine(following, time.min, tzinfo=OSLO)
    return start, end


def monthly_report(
    session: Session, *, month: date, instrument: str | None = None, lab_name: str = "Laboratory"
) -> QcReport:
    start, end = month_bounds(month)
    query = (
        select(QcRun.instrument, LabTest.code, QcPoint.lot_id)
        .join(QcPoint, QcPoint.run_id == QcRun.id)
        .join(LabTest, LabTest.id == QcRun.test_id)
        .where(QcRun.run_at >= start, QcRun.run_at < end)
        .distinct()
        .order_by(QcRun.instrument, LabTest.code, QcPoint.lot_id)
    )
    if instrument:
        query = query.where(QcRun.instrument == instrument)
    sections: list[QcReportSection] = []
    for name, code, lot_id in session.execute(query).tuples():
        series = queries.chart_series(
            session, instrument=name, test_code=code, lot_id=lot_id, since=start, until=end
        )
        stats = series.accepted
        unit = series.unit
        target = (
            f"{series.mean:g} ± {series.sd:g} {unit} ({series.target_source})"
            if series.mean is not None and series.sd is not None
            else "being established"
        )
        sections.append(
            QcReportSection(
                instrument=name,
                test_code=code,
                level=series.level,
                material=series.material,
                lot=series.lot,
                target=target,
                n_accepted=sum(1 for p in series.points if not p.rejected),
                n_rejected=sum(1 for p in series.points if p.rejected),
                month_mean=f"{stats.mean:.4g}" if stats else "–",
                month_sd=f"{stats.sd:.3g}" if stats else "–",
                month_cv=(
                    f"{stats.cv_percent:.2g} %" if stats and stats.cv_percent is not None else "–"
                ),
                chart=chart_of(series),
                rejected=tuple(
                    RejectedRun(
                        when=oslo_text(p.at), value=f"{p.value:g}", rules=", ".join(p.rules)
                    )
                    for p in series.points
                    if p.rejected
                ),
            )
        )
    return QcReport(
        lab_name=lab_name,
        month=start.strftime("%m.%Y"),
        printed=oslo_text(utcnow()),
        sections=tuple(sections),
        actions=month_actions(session, start=start, end=end, instrument=instrument),
        note=(
            "Statistics are of the accepted points of the month; rejected points are shown "
            "and listed but left out. Targets are those in use at printing."
        ),
    )


def month_actions(
    session: Session, *, start: datetime, end: datetime, instrument: str | None = None
) -> tuple[QcAction, ...]:
    """The month's lock overrides (who and why), control results kept in the QC queue (the
    reason, and what became of them), patient-based alarms and the corrective actions written
    down against runs, oldest first."""
    found: list[tuple[datetime, QcAction]] = []
    overrides = (
        select(QcOverride, LabTest.code)
        .join(LabTest, LabTest.id == QcOverride.test_id)
        .where(QcOverride.at >= start, QcOverride.at < end)
    )
    problems = (
        select(QcProblem, QcResult)
        .join(QcResult, QcResult.id == QcProblem.qc_result_id)
        .where(
            or_(
                and_(QcProblem.created_at >= start, QcProblem.created_at < end),
                # kept in an earlier month, handled in this one
                and_(QcProblem.handled_at >= start, QcProblem.handled_at < end),
            )
        )
    )
    alarms = (
        select(QcMovingAlarm, LabTest.code)
        .join(LabTest, LabTest.id == QcMovingAlarm.test_id)
        .where(QcMovingAlarm.raised_at >= start, QcMovingAlarm.raised_at < end)
    )
    if instrument:
        overrides = overrides.where(QcOverride.instrument == instrument)
        problems = problems.where(func.split_part(QcResult.instrument, "/", 1) == instrument)
        alarms = alarms.where(QcMovingAlarm.instrument == instrument)
    for override, code in session.execute(overrides).tuples():
        found.append(
            (
                override.at,
                QcAction(
                    when=oslo_text(override.at),
                    instrument=override.instrument,
                    test_code=code,
                    what="lock override",
                    by=override.person,
                    detail=f"lock of run {override.locked_by_run_id} released: {override.reason}",
                ),
            )
        )
    for problem, result in session.execute(problems).tuples():
        outcome = {
            ProblemStatus.OPEN: "still open",
            ProblemStatus.RESOLVED: f"judged later as run {problem.run_id}",
            ProblemStatus.DISCARDED: f"discarded: {problem.note}",
        }.get(ProblemStatus(problem.status), problem.status)
        # Listed when it was kept; one kept in an earlier month when it was handled.
        at = problem.created_at
        if at < start and problem.handled_at is not None:
            at = problem.handled_at
            outcome = f"kept {oslo_text(problem.created_at)}; {outcome}"
        found.append(
            (
                at,
                QcAction(
                    when=oslo_text(at),
                    instrument=result.instrument,
                    test_code=result.test_code or result.instrument_test_code,
                    what="QC queue",
                    by=problem.handled_by or "",
                    detail=f"control {result.control_id} value {result.value} {result.unit}: "
                    f"{problem.reason}; {outcome}",
                ),
            )
        )
    for alarm, code in session.execute(alarms).tuples():
        cleared = (
            f"cleared {oslo_text(alarm.cleared_at)} at {alarm.cleared_value:g}"
            if alarm.cleared_at is not None and alarm.cleared_value is not None
            else "still open"
        )
        found.append(
            (
                alarm.raised_at,
                QcAction(
                    when=oslo_text(alarm.raised_at),
                    instrument=alarm.instrument,
                    test_code=code,
                    what="patient-based alarm",
                    by="",
                    detail=f"moving {alarm.statistic} {alarm.value:g} outside "
                    f"{alarm.control_low:g}-{alarm.control_high:g} (block of {alarm.block_size}); "
                    f"{cleared}",
                ),
            )
        )
    codes = dict(session.execute(select(LabTest.id, LabTest.code)).tuples().all())
    for done, run in actions_between(session, start=start, end=end):
        if instrument and run.instrument != instrument:
            continue
        found.append(
            (
                done.at,
                QcAction(
                    when=oslo_text(done.at),
                    instrument=run.instrument,
                    test_code=codes.get(run.test_id, ""),
                    what="corrective action",
                    by=done.by,
                    detail=f"run {run.id} ({run.status}, {oslo_text(run.run_at)}"
                    f"{', ' + run.first_rule if run.first_rule else ''}): {done.text}",
                ),
            )
        )
    for entry in changes_between(session, start=start, end=end, instrument=instrument):
        found.append((entry.at, _lock_action(entry)))
    return tuple(action for _, action in sorted(found, key=lambda pair: pair[0]))


def _lock_action(entry: LockEntry) -> QcAction:
    """A lock or a release as a line of the report; a release with no corrective action
    written down against the locking run says so."""
    if entry.locked:
        return QcAction(
            when=oslo_text(entry.at),
            instrument=entry.instrument,
            test_code=entry.test_code,
            what="locked",
            by="",
            detail=f"run {entry.locking_run_id} rejected ({entry.rule})",
        )
    how = (
        f"override by {entry.override_by}"
        if entry.by_override
        else f"accepted run {entry.released_by_run_id}"
    )
    documented = (
        f"{len(entry.actions)} corrective action(s) written down"
        if entry.actions
        else "no corrective action written down"
    )
    return QcAction(
        when=oslo_text(entry.at),
        instrument=entry.instrument,
        test_code=entry.test_code,
        what="released",
        by=entry.override_by,
        detail=f"lock of run {entry.locking_run_id} ({entry.rule}) released by {how}; {documented}",
    )
