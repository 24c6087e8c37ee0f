"""Control results arriving in an ASTM message: the levels of one message form one run per test,
judged before the message's patient results are recorded; what cannot be judged is queued."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from instruments.messages import handle_raw_message
from instruments.profiles import get_profile
from lab.qc import queue as qc_queue
from lab.qc import service as qc
from lab.tables.instruments import QcResult
from lab.tables.qc import QcRun
from tests.instruments.conftest import tcp_instrument
from tests.qc.builders import ANALYSER

HEADER = r"H|\^&|||cobas^1|||||||P|1|20261130080000"


def message(*orders: tuple[str, list[tuple[str, str, str]]]) -> list[bytes]:
    """ASTM records (E1394) of a message: an O record per control and its R records."""
    lines = [HEADER, "P|1"]
    for number, (control_id, results) in enumerate(orders, start=1):
        lines.append(f"O|{number}|{control_id}||^^^{results[0][0]}|R")
        for index, (code, value, unit) in enumerate(results, start=1):
            lines.append(f"R|{index}|^^^{code}|{value}|{unit}||N||F||||20261130080000")
    lines.append("L|1|N")
    return [line.encode("latin-1") for line in lines]


def test_a_1_3s_in_one_message_locks_na_on_that_analyser_and_a_repeat_changes_nothing(
    db: Session,
) -> None:
    analyser = tcp_instrument("demo")
    raws = message(
        ("QC1-DEMO", [("NA", "144.2", "mmol/L"), ("K", "4.01", "mmol/L")]),
        ("QC2-DEMO", [("NA", "120.1", "mmol/L"), ("K", "6.49", "mmol/L")]),
    )
    outcome = handle_raw_message(db, instrument=analyser, profile=get_profile("generic"), raws=raws)
    assert outcome.qc == 4 and outcome.unmatched == 0
    runs = db.scalars(select(QcRun).where(QcRun.instrument == "demo").order_by(QcRun.id)).all()
    assert sorted((len(r.points), r.status) for r in runs) == [(2, "accepted"), (2, "rejected")]
    assert qc.locked_tests(db, instrument="demo", test_codes=["NA", "K"]) == {"NA"}
    again = handle_raw_message(db, instrument=analyser, profile=get_profile("generic"), raws=raws)
    assert again.qc == 0
    assert len(db.scalars(select(QcRun).where(QcRun.instrument == "demo")).all()) == 2


def test_an_unknown_control_and_a_wrong_unit_wait_in_the_qc_queue(db: Session) -> None:
    analyser = tcp_instrument("demo")
    raws = message(
        ("QC3-UNKNOWN", [("NA", "140", "mmol/L")]),
        ("QC1-DEMO", [("GLUK", "99", "mg/dL")]),
    )
    outcome = handle_raw_message(db, instrument=analyser, profile=get_profile("generic"), raws=raws)
    assert outcome.qc == 2
    reasons = sorted(problem.reason for problem, _ in qc_queue.open_problems(db))
    assert "control ID 'QC3-UNKNOWN' is not mapped" in reasons[0]
    assert "unit 'mg/dL' does not match" in reasons[1]
    assert len(db.scalars(select(QcResult).where(QcResult.instrument == "demo")).all()) == 2
    assert db.scalars(select(QcRun).where(QcRun.instrument == "demo")).all() == []
    assert qc.locked_tests(db, instrument="demo", test_codes=["NA", "GLUK"]) == frozenset()


def test_control_results_whose_judging_fails_wait_in_the_qc_queue(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect while judging never refuses the message nor loses the controls: they are kept
    in the QC queue with the reason, and are judged once the cause is gone."""

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("a defect")

    analyser = tcp_instrument("demo")
    raws = message(("QC1-DEMO", [("NA", "140.1", "mmol/L")]))
    with monkeypatch.context() as patched:
        patched.setattr(qc, "store_run", broken)
        outcome = handle_raw_message(
            db, instrument=analyser, profile=get_profile("generic"), raws=raws
        )
    assert outcome.qc == 1
    assert db.scalars(select(QcRun).where(QcRun.instrument == "demo")).all() == []
    ((problem, result),) = qc_queue.open_problems(db)
    assert result.control_id == "QC1-DEMO"
    assert problem.reason.startswith("could not be judged (RuntimeError at ")
    run = qc_queue.retry_problem(db, actor=ANALYSER, problem_id=problem.id)
    assert run.status == "accepted" and qc_queue.open_problems(db) == []
