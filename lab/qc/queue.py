"""The QC queue: control results that could not be judged, until a person retries or discards
them. Never applied to a patient, never dropped."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, insert, literal, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.errors import Conflict, InvalidInput, NotFound
from lab.qc.judging import read_results
from lab.qc.materials import analyser_name
from lab.qc.service import store_run
from lab.tables.instruments import QcResult
from lab.tables.qc import ProblemStatus, QcPoint, QcProblem, QcRun, RunSource
from lab.timeutil import utcnow


def open_problems(session: Session, *, limit: int = 200) -> list[tuple[QcProblem, QcResult]]:
    query = (
        select(QcProblem, QcResult)
        .join(QcResult, QcResult.id == QcProblem.qc_result_id)
        .where(QcProblem.status == ProblemStatus.OPEN)
        .order_by(QcProblem.id)
        .limit(limit)
    )
    return [(problem, result) for problem, result in session.execute(query).tuples()]


def _open_problem(session: Session, problem_id: int) -> QcProblem:
    problem = session.get(QcProblem, problem_id, with_for_update=True)
    if problem is None:
        raise NotFound(f"no QC queue entry {problem_id}")
    if problem.status != ProblemStatus.OPEN:
        raise Conflict(f"QC queue entry {problem_id} is {problem.status} already")
    return problem


def keep_unjudged(
    session: Session, *, actor: Actor, qc_result_ids: Sequence[int], reason: str
) -> list[int]:
    """Put control results whose judging failed (a defect, not bad input) in the QC queue with
    the reason, so a person sees them and judges them again (`retry_problem`) once it is fixed:
    never silently dropped. Results queued or judged already are left as they are. The ids of
    the queue entries made."""
    if not qc_result_ids:
        return []
    made = list(
        session.scalars(
            insert(QcProblem)
            .from_select(
                ["qc_result_id", "reason", "status"],
                select(QcResult.id, literal(reason), literal(ProblemStatus.OPEN.value))
                .where(
                    QcResult.id.in_(qc_result_ids),
                    ~exists().where(QcProblem.qc_result_id == QcResult.id),
                    ~exists().where(QcPoint.qc_result_id == QcResult.id),
                )
                .order_by(QcResult.id),
            )
            .returning(QcProblem.id)
        )
    )
    audit.record_rows(
        session,
        [
            audit.row(
                actor=actor,
                action="qc.queue.add",
                entity_type="qc_problem",
                entity_id=problem_id,
                detail=reason,
            )
            for problem_id in made
        ],
    )
    return made


def retry_problem(session: Session, *, actor: Actor, problem_id: int) -> QcRun:
    """Judge a queued control result again once its cause is fixed (a control ID mapped, a
    target entered): it becomes a run of its own. Still not judgeable: 409 with the reason."""
    problem = _open_problem(session, problem_id)
    row = session.get(QcResult, problem.qc_result_id)
    if row is None:
        raise NotFound(f"the control result of queue entry {problem_id} is missing")
    name = analyser_name(row.instrument)
    session.flush()
    (item,) = read_results(session, instrument=name, ids=[row.id])
    candidate = item.candidate
    if candidate is None:
        problem.reason = item.reason
        raise Conflict(f"still cannot be judged: {item.reason}")
    run = store_run(
        session,
        actor=actor,
        instrument=name,
        test_id=candidate.target.test_id,
        candidates=[candidate],
        run_key="a" + str(row.id),
        source=RunSource.ANALYSER,
        comment=f"from the QC queue (entry {problem.id})",
    )
    _close_problem(session, actor=actor, problem=problem, status=ProblemStatus.RESOLVED, note="")
    problem.run_id = run.id
    return run


def discard_problem(session: Session, *, actor: Actor, problem_id: int, note: str) -> QcProblem:
    note = note.strip()
    if not note:
        raise InvalidInput.field("note", "say why the control result is not to be used")
    problem = _open_problem(session, problem_id)
    _close_problem(session, actor=actor, problem=problem, status=ProblemStatus.DISCARDED, note=note)
    return problem


def _close_problem(
    session: Session, *, actor: Actor, problem: QcProblem, status: ProblemStatus, note: str
) -> None:
    problem.status = status
    problem.handled_by = actor.username
    problem.handled_at = utcnow()
    problem.note = note
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"qc.queue.{status.value}",
        entity_type="qc_problem",
        entity_id=problem.id,
        detail=note,
    )
