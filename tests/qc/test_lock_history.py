"""The lock's history: when a test was locked and released, how, and whether a corrective action
was written down against the run that locked it; on the chart page, in the API and in the
monthly report."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session

from lab.catalog import service as catalog
from lab.qc import actions as qc_actions
from lab.qc import lock as qc_lock
from lab.qc import lock_history, report
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.tables.qc import QcOverride, QcProblem, QcRun, RunStatus
from lab.timeutil import OSLO, utcnow
from tests.conftest import actor
from tests.qc.builders import ANALYSER, T0, control_result, na_run, only_run
from tests.qc.test_api import manual_run

PHYSICIAN = actor("physician", "t-physician")
TECHNICIAN = actor("technician", "t-tech")
REASON = "level 2 vial was expired; a fresh vial ran in control on the second analyser"


def test_locks_and_releases_with_how_and_the_actions_written_down(db: Session) -> None:
    na = catalog.get_by_code(db, "NA")
    assert lock_history.history(db, instrument="demo", test=na) == []
    first = only_run(na_run(db, 0.0, -3.3, minute=0))  # 1-3s locks
    only_run(na_run(db, 0.1, 0.2, minute=30))  # accepted, both levels: released
    second = only_run(na_run(db, 3.4, 0.0, minute=60))  # locks again
    only_run(na_run(db, 0.1, None, minute=70))  # one level only: stays locked
    qc_actions.add_action(db, actor=TECHNICIAN, run_id=second.id, text="new reagent pack loaded")
    qc.override_lock(db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason=REASON)

    newest, locked_again, released, locked = lock_history.history(db, instrument="demo", test=na)
    assert locked.locked and locked.locking_run_id == first.id and locked.rule == "1-3s"
    assert not released.locked and released.locking_run_id == first.id
    assert released.released_by_run_id is not None and not released.by_override
    assert released.action_missing  # nothing was written down against the first run
    assert locked_again.locked and locked_again.locking_run_id == second.id
    assert not newest.locked and newest.by_override and newest.override_by == "t-physician"
    assert newest.override_reason == REASON and newest.locking_run_id == second.id
    assert [a.text for a in newest.actions] == ["new reagent pack loaded"]
    assert not newest.action_missing
    assert len(lock_history.history(db, instrument="demo", test=na, limit=1)) == 1
    assert _by_the_fold(db, na.id) == lock_history.history(db, instrument="demo", test=na)


def _by_the_fold(db: Session, test_id: int) -> list[lock_history.LockEntry]:
    """The history as the pure fold over every stored run and override gives it, newest first."""
    every = qc.stored_events(db, instrument="demo", test_id=test_id)
    return lock_history._entries(db, "demo", "NA", qc_lock.changes(every))[::-1]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=120),
            st.sampled_from(["accepted", "one_level", "rejected", "override"]),
        ),
        max_size=14,
    )
)
def test_the_walk_on_the_server_agrees_with_the_fold(
    db: Session, events: list[tuple[int, str]]
) -> None:
    na = catalog.get_by_code(db, "NA")
    saved = db.begin_nested()
    try:
        for minute, kind in events:
            at = T0 + timedelta(minutes=minute)
            if kind == "override":
                db.add(
                    QcOverride(instrument="demo", test_id=na.id, at=at, person="p", reason="r" * 10)
                )
                continue
            db.add(
                QcRun(
                    instrument="demo",
                    test_id=na.id,
                    run_at=at,
                    run_key=secrets.token_hex(8),
                    source="manual",
                    status=RunStatus.REJECTED if kind == "rejected" else RunStatus.ACCEPTED,
                    rules_applied=[],
                    first_rule="1-3s" if kind == "rejected" else "",
                    all_levels=kind != "one_level",
                    entered_by="t",
                )
            )
        db.flush()
        assert lock_history.history(db, instrument="demo", test=na, limit=500) == _by_the_fold(
            db, na.id
        )
        assert (
            lock_history.history(db, instrument="demo", test=na, limit=2)
            == _by_the_fold(db, na.id)[:2]
        )
    finally:
        saved.rollback()


def test_the_month_lists_locks_releases_and_queue_entries_handled_in_it(db: Session) -> None:
    na_run(db, 0.0, -3.3, minute=0)
    qc.override_lock(db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason=REASON)
    # A control result kept in the QC queue a month before, discarded in this month.
    kept = control_result(db, control_id="QC9-UNKNOWN", value="140")
    outcome = qc.take_analyser_results(db, actor=ANALYSER, instrument="demo", qc_result_ids=[kept])
    (problem,) = outcome.problems
    db.execute(
        update(QcProblem)
        .where(QcProblem.id == problem.id)
        .values(created_at=T0 - timedelta(days=35))
    )
    qc_queue.discard_problem(db, actor=PHYSICIAN, problem_id=problem.id, note="an old test vial")
    db.expire_all()
    handled = db.get(QcProblem, problem.id)
    assert handled is not None and handled.handled_at is not None
    start, end = report.month_bounds(handled.handled_at.astimezone(OSLO).date())
    actions = report.month_actions(db, start=start, end=end)
    (queued,) = [a for a in actions if a.what == "QC queue"]
    assert "kept " in queued.detail and queued.detail.endswith("discarded: an old test vial")
    earlier = report.month_actions(
        db, start=start - timedelta(days=40), end=start - timedelta(days=20)
    )
    assert [a.what for a in earlier] == ["QC queue"]  # listed in the month it was kept as well
    # The lock came with the run (T0, the builders' time), the release with the override (now).
    start = report.month_bounds(T0.astimezone(OSLO).date())[0]
    lines = report.month_actions(db, start=start, end=utcnow() + timedelta(minutes=1))
    (locked,) = [a for a in lines if a.what == "locked"]
    (released,) = [a for a in lines if a.what == "released"]
    assert "1-3s" in locked.detail and released.by == "t-physician"
    assert "override by t-physician" in released.detail
    assert released.detail.endswith("no corrective action written down")


def test_the_chart_page_and_the_api_show_the_history(
    client: TestClient, as_role: dict[str, dict[str, str]]
) -> None:
    bio, lege = as_role["technician"], as_role["physician"]
    history = "/api/v1/qc/locks/history?instrument=demo&test=NA"
    assert client.get(history).status_code == 401
    assert client.get(history, headers=as_role["interface"]).status_code == 403
    assert client.get(history, headers=bio).json() == []
    page = client.get("/qc/chart?instrument=demo&test=NA&lang=en", headers=bio).text
    assert "The test has not been locked on this analyser." in page
    ran = manual_run(client, bio, {"QC1-DEMO": "144.2", "QC2-DEMO": "120.1"}, minute=0)
    override = {"instrument": "demo", "test": "NA", "reason": "control vial left at room temp"}
    assert client.post("/api/v1/qc/locks/override", json=override, headers=lege).status_code == 200
    released, locked = client.get(history, headers=bio).json()
    assert locked["state"] == "locked" and locked["rule"] == "1-3s"
    assert locked["locking_run_id"] == ran.json()["id"]
    assert released["state"] == "in_control" and released["override_reason"] == override["reason"]
    assert released["action_missing"] is True and released["actions"] == []
    page = client.get("/qc/chart?instrument=demo&test=NA&lang=en", headers=bio).text
    assert "Lock history" in page and f"Run {ran.json()['id']} rejected (1-3s)" in page
    assert "Override by " in page and "control vial left at room temp" in page
    assert f"No corrective action written down for run {ran.json()['id']}" in page
    norsk = client.get("/qc/chart?instrument=demo&test=NA&lang=nb", headers=bio).text
    assert "Låshistorikk" in norsk and "Ingen korrigerende tiltak skrevet ned" in norsk
