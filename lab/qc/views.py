"""QC pages: the state per analyser, Levey-Jennings charts, override, look-back, the QC queue,
the set-up, and the monthly report. Thin: parse, call the QC services, render."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Form, Query, Request, Response
from sqlalchemy import select, union
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.deps import SessionDep
from lab.errors import InvalidInput, LabError, NotFound
from lab.qc import actions as qc_actions
from lab.qc import lock_history, materials, queries, report
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.reports.qc_charts import levey_jennings_image
from lab.reports.qc_report import render_qc_report
from lab.tables.catalog import LabTest
from lab.tables.qc import QcControlId, QcLock, QcMaterial, QcRun, QcTarget
from lab.timeutil import OSLO, utcnow
from lab.users.roles import Permission
from lab.web.auth import form_requires, page_requires
from lab.web.pages import page_router, redirect_after_post
from lab.web.printouts import pdf_response
from lab.web.templating import error_text, language_of, render

router = page_router()

P = Permission
ViewQcPage = Annotated[Actor, Depends(page_requires(P.VIEW_ANALYSERS))]
LookBackPage = Annotated[Actor, Depends(page_requires(P.READ_PATIENT_DATA))]
ManageQcPage = Annotated[Actor, Depends(page_requires(P.MANAGE_QC))]
EnterQcForm = Annotated[Actor, Depends(form_requires(P.ENTER_QC))]
ManageQcForm = Annotated[Actor, Depends(form_requires(P.MANAGE_QC))]
OverrideForm = Annotated[Actor, Depends(form_requires(P.OVERRIDE_QC_LOCK))]
Text = Annotated[str, Form()]


def _problem_text(exc: LabError) -> str:
    return "; ".join(p.message for p in exc.problems) or exc.message


def known_analysers(session: Session) -> list[str]:
    """Analysers QC knows of: those with runs, locks, or targets and control IDs of their own."""
    names = union(
        select(QcRun.instrument).distinct(),
        select(QcLock.instrument).distinct(),
        select(QcTarget.instrument).where(QcTarget.instrument != "").distinct(),
        select(QcControlId.instrument).where(QcControlId.instrument != "").distinct(),
    )
    return sorted(session.scalars(select(names.subquery().c[0])))


def _overview(
    request: Request,
    session: Session,
    *,
    instrument: str,
    errors: dict[str, str] | None = None,
    kept: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    analysers = known_analysers(session)
    name = materials.analyser_name(instrument) or (analysers[0] if analysers else "")
    return render(
        request,
        "qc/overview.html",
        {
            "instrument": name,
            "analysers": analysers,
            "tests": queries.status(session, instrument=name) if name else [],
            "queue": len(qc_queue.open_problems(session)),
            "errors": errors or {},
            "kept": kept or {},
            "month": utcnow().astimezone(OSLO).strftime("%Y-%m"),
        },
        status_code=status_code,
    )


@router.get("/qc")
def overview_page(
    request: Request, session: SessionDep, actor: ViewQcPage, instrument: str = ""
) -> Response:
    return _overview(request, session, instrument=instrument)


@router.get("/qc/chart")
def chart_page(
    request: Request,
    session: SessionDep,
    actor: ViewQcPage,
    instrument: Annotated[str, Query(min_length=1, max_length=64)],
    test: Annotated[str, Query(min_length=1, max_length=20)],
    lot: int | None = None,
    runs: Annotated[int, Query(ge=10, le=1000)] = 60,
) -> Response:
    """One Levey-Jennings chart per level (the lots in use, or the lot asked for)."""
    return _chart(request, session, instrument=instrument, test=test, lot=lot, runs=runs)


def _chart(
    request: Request,
    session: Session,
    *,
    instrument: str,
    test: str,
    lot: int | None = None,
    runs: int = 60,
    errors: dict[int, str] | None = None,
    status_code: int = 200,
) -> Response:
    name = materials.analyser_name(instrument)
    test_row = catalog.get_by_code(session, test)
    in_use = materials.targets_in_use(session, instrument=name, test_id=test_row.id)
    lot_ids = [lot] if lot is not None else list(dict.fromkeys(t.lot_id for t in in_use))
    charts: list[dict[str, Any]] = []
    for lot_id in lot_ids:
        series = queries.chart_series(
            session,
            instrument=name,
            test_code=test_row.code,
            lot_id=lot_id,
            limit=runs,
            test=test_row,
            in_use=in_use,
        )
        charts.append({"series": series, "image": levey_jennings_image(report.chart_of(series))})
    recent = session.scalars(
        select(QcRun)
        .where(QcRun.instrument == name, QcRun.test_id == test_row.id)
        .order_by(QcRun.run_at.desc(), QcRun.id.desc())
        .limit(20)
    ).all()
    return render(
        request,
        "qc/chart.html",
        {
            "instrument": name,
            "test": test_row,
            "charts": charts,
            "lots": queries.chart_lots(
                session, instrument=name, test_code=test_row.code, test=test_row
            ),
            "lot": lot,
            "runs": runs,
            "recent": recent,
            "actions": qc_actions.actions_of(session, [r.id for r in recent]),
            "lock_history": lock_history.history(session, instrument=name, test=test_row),
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.post("/qc/runs/{run_id}/action")
def add_run_action(
    request: Request, run_id: int, session: SessionDep, actor: EnterQcForm, text: Text = ""
) -> Response:
    """Write down what was done about a run, from the chart page's list of runs."""
    run = session.get(QcRun, run_id)
    if run is None:
        raise NotFound(f"no QC run {run_id}")
    test_code = session.scalars(select(LabTest.code).where(LabTest.id == run.test_id)).one()
    try:
        qc_actions.add_action(session, actor=actor, run_id=run_id, text=text)
    except LabError as exc:
        session.rollback()
        return _chart(
            request,
            session,
            instrument=run.instrument,
            test=test_code,
            errors={run_id: error_text(language_of(request), exc)},
            status_code=exc.http_status,
        )
    return redirect_after_post("/qc/chart", instrument=run.instrument, test=test_code)


@router.post("/qc/override")
def override(
    request: Request,
    session: SessionDep,
    actor: OverrideForm,
    instrument: Text,
    test: Text,
    reason: Text = "",
) -> Response:
    try:
        qc.override_lock(session, actor=actor, instrument=instrument, test_code=test, reason=reason)
    except LabError as exc:
        session.rollback()
        key = test.strip().upper()
        return _overview(
            request,
            session,
            instrument=instrument,
            errors={key: _problem_text(exc)},
            kept={key: reason},
            status_code=exc.http_status,
        )
    return redirect_after_post("/qc", instrument=materials.analyser_name(instrument))


@router.get("/qc/lookback")
def look_back_page(
    request: Request,
    session: SessionDep,
    actor: LookBackPage,
    instrument: Annotated[str, Query(min_length=1, max_length=64)],
    test: Annotated[str, Query(min_length=1, max_length=20)],
) -> Response:
    found = queries.look_back(session, actor=actor, instrument=instrument, test_code=test)
    return render(
        request,
        "qc/lookback.html",
        {"instrument": materials.analyser_name(instrument), "test": test.upper(), "found": found},
    )


# --- the QC queue -------------------------------------------------------------------------------


def _queue(
    request: Request,
    session: Session,
    *,
    errors: dict[int, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "qc/queue.html",
        {"problems": qc_queue.open_problems(session), "errors": errors or {}},
        status_code=status_code,
    )


@router.get("/qc/queue")
def queue_page(request: Request, session: SessionDep, actor: ViewQcPage) -> Response:
    return _queue(request, session)


@router.post("/qc/queue/{problem_id}/retry")
def retry(request: Request, problem_id: int, session: SessionDep, actor: EnterQcForm) -> Response:
    try:
        qc_queue.retry_problem(session, actor=actor, problem_id=problem_id)
    except LabError as exc:
        session.rollback()
        return _queue(
            request, session, errors={problem_id: _problem_text(exc)}, status_code=exc.http_status
        )
    return redirect_after_post("/qc/queue")


@router.post("/qc/queue/{problem_id}/discard")
def discard(
    request: Request, problem_id: int, session: SessionDep, actor: EnterQcForm, note: Text = ""
) -> Response:
    try:
        qc_queue.discard_problem(session, actor=actor, problem_id=problem_id, note=note)
    except LabError as exc:
        session.rollback()
        return _queue(
            request, session, errors={problem_id: _problem_text(exc)}, status_code=exc.http_status
        )
    return redirect_after_post("/qc/queue")


# --- set-up -------------------------------------------------------------------------------------


def _setup(
    request: Request,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    kept: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "qc/setup.html",
        {
            "materials": session.scalars(
                select(QcMaterial).order_by(QcMaterial.level, QcMaterial.name)
            ).all(),
            "lots": materials.list_lots(session),
            "control_ids": materials.list_control_ids(session),
            "targets": session.scalars(
                select(QcTarget).order_by(QcTarget.lot_id, QcTarget.test_id)
            ).all(),
            "tests": {t.id: t.code for t in catalog.list_tests(session)},
            "errors": errors or {},
            "kept": kept or {},
        },
        status_code=status_code,
    )


@router.get("/qc/setup")
def setup_page(request: Request, session: SessionDep, actor: ManageQcPage) -> Response:
    return _setup(request, session)


@router.post("/qc/setup/lot")
def add_lot(
    request: Request,
    session: SessionDep,
    actor: ManageQcForm,
    material_id: Text = "",
    lot_number: Text = "",
    expires_on: Text = "",
    control_id: Text = "",
) -> Response:
    kept = {
        "material_id": material_id,
        "lot_number": lot_number,
        "expires_on": expires_on,
        "control_id": control_id,
    }
    try:
        try:
            expiry = date.fromisoformat(expires_on.strip())
        except ValueError:
            raise InvalidInput.field("expires_on", "the expiry date as on the label") from None
        if not material_id.strip().isdigit():
            raise InvalidInput.field("material_id", "choose the control material")
        lot = materials.add_lot(
            session,
            actor=actor,
            material_id=int(material_id),
            lot_number=lot_number,
            expires_on=expiry,
        )
        if control_id.strip():
            materials.map_control_id(session, actor=actor, control_id=control_id, lot_id=lot.id)
    except LabError as exc:
        session.rollback()
        field = exc.problems[0].field if exc.problems else "lot_number"
        return _setup(
            request,
            session,
            errors={f"lot.{field}": _problem_text(exc)},
            kept=kept,
            status_code=exc.http_status,
        )
    return redirect_after_post("/qc/setup")


@router.post("/qc/setup/target")
def set_target(
    request: Request,
    session: SessionDep,
    actor: ManageQcForm,
    lot_id: Text = "",
    test: Text = "",
    unit: Text = "",
    mean: Text = "",
    sd: Text = "",
    instrument: Text = "",
) -> Response:
    kept = {
        "lot_id": lot_id,
        "test": test,
        "unit": unit,
        "mean": mean,
        "sd": sd,
        "instrument": instrument,
    }
    try:
        if not lot_id.strip().isdigit():
            raise InvalidInput.field("lot_id", "choose the lot")
        mean_value: Decimal | None = None
        sd_value: Decimal | None = None
        if mean.strip():
            mean_value = materials.decimal_of(mean, field="mean")
        if sd.strip():
            sd_value = materials.decimal_of(sd, field="sd")
        materials.set_target(
            session,
            actor=actor,
            lot_id=int(lot_id),
            test_code=test,
            unit=unit,
            mean=mean_value,
            sd=sd_value,
            instrument=instrument,
        )
    except LabError as exc:
        session.rollback()
        field = exc.problems[0].field if exc.problems else "test"
        return _setup(
            request,
            session,
            errors={f"target.{field}": _problem_text(exc)},
            kept=kept,
            status_code=exc.http_status,
        )
    return redirect_after_post("/qc/setup")


@router.get("/qc/report")
def report_pdf(
    session: SessionDep,
    actor: ViewQcPage,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
    instrument: str = "",
) -> Response:
    try:
        first = date.fromisoformat(month + "-01")
    except ValueError:
        raise InvalidInput.field("month", f"{month} is not a month (YYYY-MM)") from None
    data = report.monthly_report(session, month=first, instrument=instrument or None)
    return pdf_response(render_qc_report(data), f"qc-{month}.pdf")
