"""JSON routes of internal QC under /api/v1/qc (thin: parse, call a service, return)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from lab.catalog import service as catalog
from lab.deps import (
    EnterQc,
    ManageQc,
    OverrideQcLock,
    ReadPatientData,
    SessionDep,
    ViewAnalysers,
)
from lab.errors import InvalidInput
from lab.qc import actions as qc_actions
from lab.qc import lock_history, materials, queries, report, schemas
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.reports.qc_report import render_qc_report
from lab.tables.qc import QcMaterial, QcRun

router = APIRouter(prefix="/api/v1/qc", tags=["qc"])

InstrumentQuery = Annotated[str, Query(min_length=1, max_length=64)]
TestQuery = Annotated[str, Query(min_length=1, max_length=20)]


def _status_out(instrument: str, found: list[queries.TestQcStatus]) -> schemas.QcStatusOut:
    return schemas.QcStatusOut(
        instrument=instrument,
        tests=[
            schemas.TestStatusOut(
                test=s.test_code,
                state=s.state,
                rule=s.rule or None,
                since=s.since,
                locked_by_run=s.locked_by_run_id,
                last_run_at=s.last_run_at,
                last_run_status=s.last_run_status,
                rules_applied=s.rules_applied,
                rule_choice=s.rule_choice,
                levels=[
                    schemas.LevelOut(
                        level=lv.level,
                        material=lv.material,
                        lot=lv.lot,
                        expires_on=lv.expires_on,
                        mean=None if lv.mean is None else float(lv.mean),
                        sd=None if lv.sd is None else float(lv.sd),
                        unit=lv.unit,
                        source=lv.source,
                    )
                    for lv in s.levels
                ],
                moving=(
                    schemas.MovingOut(
                        statistic=s.moving.statistic,
                        block_size=s.moving.block_size,
                        state=s.moving.state,
                        current=s.moving.current,
                        control_low=float(s.moving.control_low),
                        control_high=float(s.moving.control_high),
                        alarm_since=s.moving.alarm_since,
                        alarm_value=s.moving.alarm_value,
                    )
                    if s.moving is not None
                    else None
                ),
            )
            for s in found
        ],
    )


@router.get("/status", response_model=schemas.QcStatusOut)
def qc_status(
    session: SessionDep, actor: ViewAnalysers, instrument: InstrumentQuery
) -> schemas.QcStatusOut:
    """Per test on the analyser: `in_control` or `locked`, the rule that locked it, and per
    level the material, lot, mean and SD in use (and the patient-based QC state)."""
    name = materials.analyser_name(instrument)
    return _status_out(name, queries.status(session, instrument=name))


@router.get("/runs", response_model=list[schemas.RunOut])
def list_runs(
    session: SessionDep,
    actor: ViewAnalysers,
    instrument: InstrumentQuery,
    test: TestQuery,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[QcRun]:
    test_row = catalog.get_by_code(session, test)
    query = (
        select(QcRun)
        .where(
            QcRun.instrument == materials.analyser_name(instrument), QcRun.test_id == test_row.id
        )
        .order_by(QcRun.run_at.desc(), QcRun.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


@router.post("/runs", response_model=schemas.RunOut, status_code=201)
def enter_run(session: SessionDep, actor: EnterQc, data: schemas.ManualRunIn) -> QcRun:
    """A run typed in by hand; judged and locking exactly as one from the analyser."""
    run = qc.enter_run(
        session,
        actor=actor,
        instrument=data.instrument,
        test_code=data.test,
        run_at=data.run_at,
        values=[qc.ManualValue(lot_id=v.lot_id, value=v.value, unit=v.unit) for v in data.values],
        comment=data.comment,
    )
    return run


@router.post("/runs/{run_id}/actions", response_model=schemas.RunActionOut, status_code=201)
def add_run_action(
    session: SessionDep, actor: EnterQc, run_id: int, data: schemas.RunActionIn
) -> schemas.RunActionOut:
    """Write down the corrective action taken about a run (kept in the audit trail)."""
    done = qc_actions.add_action(session, actor=actor, run_id=run_id, text=data.text)
    return schemas.RunActionOut(run_id=done.run_id, at=done.at, by=done.by, text=done.text)


@router.post("/locks/override", response_model=schemas.LockOut)
def override_lock(
    session: SessionDep, actor: OverrideQcLock, data: schemas.OverrideIn
) -> schemas.LockOut:
    """Release a lock without an in-control run: a documented decision (reason required)."""
    row = qc.override_lock(
        session, actor=actor, instrument=data.instrument, test_code=data.test, reason=data.reason
    )
    return schemas.LockOut(
        instrument=row.instrument, test=data.test.upper(), state=row.state, rule=row.rule or None
    )


@router.get("/locks/history", response_model=list[schemas.LockChangeOut])
def lock_changes(
    session: SessionDep,
    actor: ViewAnalysers,
    instrument: InstrumentQuery,
    test: TestQuery,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[schemas.LockChangeOut]:
    """The lock's changes for a test on an analyser, newest first: when it was locked and by
    which run and rule, when and how it was released, and the corrective actions written down."""
    test_row = catalog.get_by_code(session, test)
    return [
        schemas.LockChangeOut(
            instrument=e.instrument,
            test=e.test_code,
            at=e.at,
            state=e.state.value,
            rule=e.rule,
            locking_run_id=e.locking_run_id,
            released_by_run_id=e.released_by_run_id,
            override_by=e.override_by or None,
            override_reason=e.override_reason or None,
            actions=[
                schemas.RunActionOut(run_id=a.run_id, at=a.at, by=a.by, text=a.text)
                for a in e.actions
            ],
            action_missing=e.action_missing,
        )
        for e in lock_history.history(session, instrument=instrument, test=test_row, limit=limit)
    ]


@router.get("/lookback", response_model=schemas.LookBackOut)
def look_back(
    session: SessionDep, actor: ReadPatientData, instrument: InstrumentQuery, test: TestQuery
) -> schemas.LookBackOut:
    """Patient results released since the last accepted run before the lock: to recheck."""
    found = queries.look_back(session, actor=actor, instrument=instrument, test_code=test)
    return schemas.LookBackOut(
        instrument=materials.analyser_name(instrument),
        test=test.upper(),
        since=found.since,
        rejected_at=found.rejected_at,
        results=[
            schemas.LookBackResultOut(
                result_id=r.result_id,
                accession_number=r.accession_number,
                value=r.value,
                unit=r.unit,
                status=r.status,
                observed_at=r.observed_at,
                verified_at=r.verified_at,
                verified_by=r.verified_by,
            )
            for r in found.results
        ],
    )


# --- the QC queue -------------------------------------------------------------------------------


@router.get("/queue", response_model=list[schemas.ProblemOut])
def list_queue(session: SessionDep, actor: ViewAnalysers) -> list[schemas.ProblemOut]:
    return [
        schemas.ProblemOut(
            id=problem.id,
            instrument=result.instrument,
            control_id=result.control_id,
            test_code=result.test_code,
            value=result.value,
            unit=result.unit,
            observed_at=result.observed_at,
            reason=problem.reason,
            status=problem.status,
        )
        for problem, result in qc_queue.open_problems(session)
    ]


@router.post("/queue/{problem_id}/retry", response_model=schemas.RunOut)
def retry_queued(session: SessionDep, actor: EnterQc, problem_id: int) -> QcRun:
    run = qc_queue.retry_problem(session, actor=actor, problem_id=problem_id)
    return run


@router.post("/queue/{problem_id}/discard", status_code=204)
def discard_queued(
    session: SessionDep, actor: EnterQc, problem_id: int, data: schemas.DiscardIn
) -> Response:
    qc_queue.discard_problem(session, actor=actor, problem_id=problem_id, note=data.note)
    return Response(status_code=204)


# --- set-up -------------------------------------------------------------------------------------


@router.get("/materials", response_model=list[schemas.MaterialOut])
def list_materials(session: SessionDep, actor: ViewAnalysers) -> list[QcMaterial]:
    return list(session.scalars(select(QcMaterial).order_by(QcMaterial.level, QcMaterial.name)))


@router.post("/materials", response_model=schemas.MaterialOut, status_code=201)
def add_material(session: SessionDep, actor: ManageQc, data: schemas.MaterialIn) -> QcMaterial:
    material = materials.add_material(
        session,
        actor=actor,
        name=data.name,
        level=data.level,
        manufacturer=data.manufacturer,
        description=data.description,
    )
    return material


@router.get("/lots", response_model=list[schemas.LotOut])
def list_lots(session: SessionDep, actor: ViewAnalysers) -> list[schemas.LotOut]:
    return [schemas.LotOut.model_validate(lot) for lot in materials.list_lots(session)]


@router.post("/lots", response_model=schemas.LotOut, status_code=201)
def add_lot(session: SessionDep, actor: ManageQc, data: schemas.LotIn) -> schemas.LotOut:
    lot = materials.add_lot(
        session,
        actor=actor,
        material_id=data.material_id,
        lot_number=data.lot_number,
        expires_on=data.expires_on,
    )
    return schemas.LotOut.model_validate(lot)


@router.put("/control-ids", status_code=204)
def map_control_id(session: SessionDep, actor: ManageQc, data: schemas.ControlIdIn) -> Response:
    materials.map_control_id(
        session,
        actor=actor,
        control_id=data.control_id,
        lot_id=data.lot_id,
        instrument=data.instrument,
    )
    return Response(status_code=204)


@router.put("/targets", response_model=schemas.TargetOut)
def set_target(session: SessionDep, actor: ManageQc, data: schemas.TargetIn) -> schemas.TargetOut:
    target = materials.set_target(
        session,
        actor=actor,
        lot_id=data.lot_id,
        test_code=data.test,
        unit=data.unit,
        mean=data.mean,
        sd=data.sd,
        instrument=data.instrument,
    )
    return schemas.TargetOut.model_validate(target)


@router.put("/policies", status_code=204)
def set_policy(session: SessionDep, actor: ManageQc, data: schemas.PolicyIn) -> Response:
    materials.set_policy(
        session,
        actor=actor,
        test_code=data.test,
        instrument=data.instrument,
        tea_percent=data.tea_percent,
        bias_percent=data.bias_percent,
        rules=data.rules,
        note=data.note,
    )
    return Response(status_code=204)


@router.put("/moving-settings", status_code=204)
def set_moving_setting(
    session: SessionDep, actor: ManageQc, data: schemas.MovingSettingIn
) -> Response:
    """Patient-based QC of a test on an analyser: statistic, block size, truncation and
    control limits (chosen on the lab's own patient data; docs/qc.md)."""
    materials.set_moving_setting(
        session,
        actor=actor,
        test_code=data.test,
        instrument=data.instrument,
        statistic=data.statistic,
        block_size=data.block_size,
        truncation_low=data.truncation_low,
        truncation_high=data.truncation_high,
        target=data.target,
        control_low=data.control_low,
        control_high=data.control_high,
        note=data.note,
    )
    return Response(status_code=204)


@router.get("/report", response_class=Response)
def monthly_report(
    session: SessionDep,
    actor: ViewAnalysers,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
    instrument: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The month's QC report as PDF (`month=2026-11`)."""
    try:
        first = date.fromisoformat(month + "-01")
    except ValueError:
        raise InvalidInput.field("month", f"{month} is not a month (YYYY-MM)") from None
    data = report.monthly_report(session, month=first, instrument=instrument)
    pdf = render_qc_report(data)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="qc-{month}.pdf"'},
    )
