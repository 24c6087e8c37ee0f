"""QC runs in the database: judging, locking, unlocking, the QC queue, establishing a lot."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.errors import Conflict, InvalidInput
from lab.qc import lock as qc_lock
from lab.qc import materials
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.tables.audit import AuditEvent
from lab.tables.catalog import LabTest
from lab.tables.qc import ProblemStatus, QcLock, QcProblem, QcRun, RunStatus, TargetSource
from tests.conftest import actor
from tests.qc.builders import T0, control_result, na_run, only_run

PHYSICIAN = actor("physician", "t-physician")


def test_the_demo_set_up_has_both_levels_for_the_six_tests(db: Session) -> None:
    by_test: dict[str, set[int]] = {}
    for target in materials.targets_in_use(db, instrument="demo"):
        code = db.get(LabTest, target.test_id).code  # type: ignore[union-attr]
        by_test.setdefault(code, set()).add(target.lot.material.level)
    assert by_test == {code: {1, 2} for code in ("NA", "K", "KREA", "GLUK", "CRP", "HB")}


def test_an_in_control_run_is_accepted_and_nothing_is_locked(db: Session) -> None:
    run = only_run(na_run(db, 0.5, -0.8))
    assert run.status == RunStatus.ACCEPTED
    assert run.all_levels
    assert [p.level for p in run.points] == [1, 2]
    assert run.points[0].z == pytest.approx(0.5, abs=1e-3)
    assert not qc.is_locked(db, instrument="demo", test_code="NA")


def test_a_1_3s_locks_the_test_on_that_analyser_only(db: Session) -> None:
    only_run(na_run(db, 0.2, 0.1))
    run = only_run(na_run(db, 3.4, 0.3, minute=10))
    assert run.status == RunStatus.REJECTED
    assert run.first_rule == "1-3s"
    assert all(p.excluded for p in run.points)
    (violation,) = [v for v in run.violations if v.rule == "1-3s"]
    assert violation.points == [{"run_id": run.id, "level": 1, "z": pytest.approx(3.4, abs=1e-3)}]
    assert qc.is_locked(db, instrument="demo", test_code="NA")
    assert qc.is_locked(db, instrument="demo/module-2", test_code="na")
    assert not qc.is_locked(db, instrument="demo", test_code="K")
    assert not qc.is_locked(db, instrument="other", test_code="NA")
    assert not qc.is_locked(db, instrument="", test_code="NA")
    assert qc.locked_tests(db, instrument="demo", test_codes=["NA", "K", "KREA"]) == {"NA"}
    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("qc.%"))).all()
    assert "qc.lock" in actions


def test_an_accepted_run_of_every_level_unlocks_and_one_level_does_not(db: Session) -> None:
    na_run(db, 3.4, 0.3)
    only_run(na_run(db, 0.1, None, minute=5))  # level 1 only: accepted, still locked
    assert qc.is_locked(db, instrument="demo", test_code="NA")
    run = only_run(na_run(db, 0.1, -0.2, minute=10))
    assert run.status == RunStatus.ACCEPTED and run.all_levels
    assert not qc.is_locked(db, instrument="demo", test_code="NA")
    lock = qc.lock_of(db, instrument="demo", test_id=run.test_id)
    assert lock is not None and lock.run_id == run.id
    assert "qc.unlock" in db.scalars(select(AuditEvent.action)).all()


def test_2_2s_across_the_two_levels_of_one_run_locks(db: Session) -> None:
    run = only_run(na_run(db, -2.3, -2.6))
    assert run.status == RunStatus.REJECTED
    assert {v.rule for v in run.violations} >= {"2-2s"}
    assert qc.is_locked(db, instrument="demo", test_code="NA")


def test_2_2s_across_two_tests_does_not_lock(db: Session) -> None:
    only_run(na_run(db, 2.3, 0.1))
    only_run(na_run(db, 2.4, 0.2, minute=5, test_code="K"))
    assert qc.locked_tests(db, instrument="demo", test_codes=["NA", "K"]) == frozenset()


def test_the_rejected_run_is_not_history_for_the_next(db: Session) -> None:
    only_run(na_run(db, 0.1, 0.1))
    only_run(na_run(db, 2.5, 3.5, minute=5))  # rejected (1-3s)
    run = only_run(na_run(db, 2.2, 0.0, minute=10))  # would be 2-2s with the rejected run
    assert run.status == RunStatus.ACCEPTED
    assert {v.rule for v in run.violations} == {"1-2s"}


def test_the_same_message_again_adds_no_run(db: Session) -> None:
    ids = [
        control_result(db, control_id="QC1-DEMO", value="140.1"),
        control_result(db, control_id="QC2-DEMO", value="119.8"),
    ]
    first = qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=ids)
    again = qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=ids)
    assert only_run(first).id == only_run(again).id


def test_a_level_sent_twice_in_one_message_makes_two_runs(db: Session) -> None:
    ids = [
        control_result(db, control_id="QC1-DEMO", value="140.1"),
        control_result(db, control_id="QC2-DEMO", value="119.8"),
        control_result(db, control_id="QC1-DEMO", value="140.3", at=T0 + timedelta(seconds=30)),
    ]
    outcome = qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=ids)
    assert [len(run.points) for run in outcome.runs] == [2, 1]


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"control_id": "QC9-UNKNOWN", "value": "140"}, "is not mapped to a control lot"),
        ({"control_id": "QC1-DEMO", "value": "140", "unit": "mg/dL"}, "does not match"),
        ({"control_id": "QC1-DEMO", "value": "high"}, "is not a number"),
        ({"control_id": "QC1-DEMO", "value": "140", "test_code": None}, "is not mapped for"),
        ({"control_id": "QC1-DEMO", "value": "140", "status": "X"}, "is not a result to judge"),
        ({"control_id": "QC1-DEMO", "value": "140", "test_code": "LPK"}, "has no target"),
    ],
)
def test_a_control_result_that_cannot_be_judged_waits_in_the_qc_queue(
    db: Session, kwargs: dict[str, str | None], reason: str
) -> None:
    row_id = control_result(db, **kwargs)  # type: ignore[arg-type]
    outcome = qc.take_analyser_results(
        db, actor=PHYSICIAN, instrument="demo", qc_result_ids=[row_id]
    )
    assert outcome.runs == []
    (problem,) = outcome.problems
    assert reason in problem.reason
    assert problem.status == ProblemStatus.OPEN
    assert [p.id for p, _ in qc_queue.open_problems(db)] == [problem.id]
    assert not qc.is_locked(db, instrument="demo", test_code="NA")


def test_an_expired_lot_is_queued_and_the_run_of_the_other_level_goes_on(db: Session) -> None:
    lot = materials.lot_for_control(db, instrument="demo", control_id="QC2-DEMO")
    assert lot is not None
    lot.expires_on = date(2026, 11, 1)
    ids = [
        control_result(db, control_id="QC1-DEMO", value="140.2"),
        control_result(db, control_id="QC2-DEMO", value="120.1"),
    ]
    outcome = qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=ids)
    (problem,) = outcome.problems
    assert "expired on 2026-11-01" in problem.reason
    (run,) = outcome.runs
    assert [p.level for p in run.points] == [1]
    # an expired lot does not lower the bar: level 2 is still needed to release a lock
    assert not run.all_levels
    assert materials.required_levels(db, instrument="demo", test_id=run.test_id) == {1, 2}


def test_a_queued_result_is_judged_once_its_cause_is_fixed_or_discarded_with_a_note(
    db: Session,
) -> None:
    first = control_result(db, control_id="QC7-NEW", value="140.4")
    second = control_result(db, control_id="QC7-NEW", value="141.0")
    outcome = qc.take_analyser_results(
        db, actor=PHYSICIAN, instrument="demo", qc_result_ids=[first, second]
    )
    one, two = outcome.problems
    with pytest.raises(Conflict, match="still cannot be judged"):
        qc_queue.retry_problem(db, actor=PHYSICIAN, problem_id=one.id)
    lot = materials.lot_for_control(db, instrument="demo", control_id="QC1-DEMO")
    assert lot is not None
    materials.map_control_id(db, actor=PHYSICIAN, control_id="QC7-NEW", lot_id=lot.id)
    run = qc_queue.retry_problem(db, actor=PHYSICIAN, problem_id=one.id)
    assert run.status == RunStatus.ACCEPTED
    assert db.get(QcProblem, one.id).status == ProblemStatus.RESOLVED  # type: ignore[union-attr]
    with pytest.raises(InvalidInput):
        qc_queue.discard_problem(db, actor=PHYSICIAN, problem_id=two.id, note=" ")
    qc_queue.discard_problem(db, actor=PHYSICIAN, problem_id=two.id, note="control was left open")
    with pytest.raises(Conflict):
        qc_queue.retry_problem(db, actor=PHYSICIAN, problem_id=two.id)
    assert qc_queue.open_problems(db) == []


# --- override -----------------------------------------------------------------------------------


def test_an_override_needs_a_reason_and_a_lock_and_is_audited(db: Session) -> None:
    with pytest.raises(Conflict):
        qc.override_lock(
            db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason="nothing is locked now"
        )
    na_run(db, 0.0, -3.3)
    with pytest.raises(InvalidInput):
        qc.override_lock(db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason="ok")
    qc.override_lock(
        db,
        actor=PHYSICIAN,
        instrument="demo",
        test_code="NA",
        reason="level 2 vial was expired; fresh vial in control on the second analyser",
    )
    assert not qc.is_locked(db, instrument="demo", test_code="NA")
    override = db.scalars(select(AuditEvent).where(AuditEvent.action == "qc.override")).one()
    assert override.actor_name == "t-physician" and "fresh vial" in override.detail


# --- manual entry -------------------------------------------------------------------------------


def test_a_run_typed_in_is_judged_like_one_from_the_analyser(db: Session) -> None:
    lot1 = materials.lot_for_control(db, instrument="demo", control_id="QC1-DEMO")
    lot2 = materials.lot_for_control(db, instrument="demo", control_id="QC2-DEMO")
    assert lot1 is not None and lot2 is not None
    run = qc.enter_run(
        db,
        actor=PHYSICIAN,
        instrument="demo",
        test_code="NA",
        run_at=T0,
        values=[
            qc.ManualValue(lot_id=lot1.id, value="144,2"),
            qc.ManualValue(lot_id=lot2.id, value="120"),
        ],
    )
    assert run.status == RunStatus.REJECTED and run.first_rule == "1-3s"
    with pytest.raises(InvalidInput) as error:
        qc.enter_run(
            db,
            actor=PHYSICIAN,
            instrument="demo",
            test_code="NA",
            run_at=T0,
            values=[qc.ManualValue(lot_id=lot1.id, value="140", unit="mg/dL")],
        )
    assert error.value.problems[0].field == "values.0.unit"


# --- establishing a new lot ---------------------------------------------------------------------


def test_a_new_lot_is_established_from_its_first_20_runs_then_judged(db: Session) -> None:
    material = materials.material_by_name(db, "QC1-DEMO")
    lot = materials.add_lot(
        db,
        actor=PHYSICIAN,
        material_id=material.id,
        lot_number="NEW-1",
        expires_on=date(2030, 1, 1),
    )
    materials.map_control_id(db, actor=PHYSICIAN, control_id="QC1-NEW", lot_id=lot.id)
    target = materials.set_target(
        db, actor=PHYSICIAN, lot_id=lot.id, test_code="NA", unit="mmol/L", mean=None, sd=None
    )
    values = [141.0 + (i % 5 - 2) * 0.5 for i in range(20)]
    for minute, value in enumerate(values):
        row = control_result(
            db, control_id="QC1-NEW", value=str(value), at=T0 + timedelta(minutes=minute)
        )
        run = only_run(
            qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=[row])
        )
        assert run.status == RunStatus.ESTABLISHING
    db.refresh(target)
    assert target.source == TargetSource.ESTABLISHED
    assert float(target.mean) == pytest.approx(141.0)  # type: ignore[arg-type]
    assert float(target.sd) == pytest.approx(0.7254762501, rel=1e-5)  # sample SD, n - 1
    row = control_result(db, control_id="QC1-NEW", value="145", at=T0 + timedelta(hours=2))
    run = only_run(
        qc.take_analyser_results(db, actor=PHYSICIAN, instrument="demo", qc_result_ids=[row])
    )
    assert run.status == RunStatus.REJECTED and run.first_rule == "1-3s"


# --- the lock row is the fold of the stored runs ------------------------------------------------


def test_a_run_sent_late_refolds_the_lock(db: Session) -> None:
    only_run(na_run(db, 0.1, 0.2, minute=30))
    only_run(na_run(db, 3.5, 0.2, minute=10))  # measured before the accepted run, sent after
    assert not qc.is_locked(db, instrument="demo", test_code="NA")


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=120),
            st.sampled_from([-3.5, -2.4, -1.2, 0.0, 0.7, 1.5, 2.3, 3.2]),
            st.sampled_from([-2.5, -0.5, 0.4, 1.1, 2.6, 3.6, None]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=120), max_size=2),
)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_stored_lock_always_equals_the_fold_of_stored_runs_and_overrides(
    db: Session, runs: list[tuple[int, float, float | None]], overrides: list[int]
) -> None:
    savepoint = db.begin_nested()
    try:
        test_id = db.scalar(select(LabTest.id).where(LabTest.code == "NA"))
        assert test_id is not None
        for minute, z1, z2 in runs:
            na_run(db, z1, z2, minute=minute)
            if overrides and qc.is_locked(db, instrument="demo", test_code="NA"):
                overrides.pop()
                qc.override_lock(
                    db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason="tested override"
                )
        stored = db.scalar(
            select(QcLock).where(QcLock.instrument == "demo", QcLock.test_id == test_id)
        )
        folded = qc_lock.fold(qc.stored_events(db, instrument="demo", test_id=test_id))
        assert stored is not None
        assert (stored.state, stored.rule, stored.run_id) == (
            folded.state.value,
            folded.rule,
            folded.run_id,
        )
        assert qc.is_locked(db, instrument="demo", test_code="NA") == folded.locked
        runs_stored = db.scalars(select(QcRun).where(QcRun.test_id == test_id)).all()
        assert all(
            all(p.excluded for p in r.points) == (r.status == RunStatus.REJECTED)
            for r in runs_stored
        )
    finally:
        savepoint.rollback()


def test_history_used_is_the_last_accepted_runs_before_this_one(db: Session) -> None:
    runs = [only_run(na_run(db, z, -z, minute=m)) for m, z in enumerate([0.5, -0.5] * 6)]
    assert all(r.status == RunStatus.ACCEPTED for r in runs)
    only_run(na_run(db, 3.5, 0.0, minute=30))  # rejected: not history
    run = only_run(na_run(db, 0.2, 0.2, minute=40))
    history = qc.history_before(
        db, instrument="demo", test_id=run.test_id, run_at=run.run_at, run_id=run.id
    )
    assert [r.run_id for r in history] == [r.id for r in runs[-9:]]
    assert Decimal(str(runs[0].points[0].value)) == Decimal("140.6000")
