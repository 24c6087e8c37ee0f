"""The monthly QC report answers for the month: lock overrides with who and why, control results
kept in the QC queue with the reason and what became of them, patient-based alarms."""

from __future__ import annotations

from io import BytesIO

from pypdf import PdfReader
from sqlalchemy.orm import Session

from lab.qc import queue as qc_queue
from lab.qc import report
from lab.qc import service as qc
from lab.reports.qc_report import render_qc_report
from lab.timeutil import OSLO, utcnow
from tests.conftest import actor
from tests.qc.builders import ANALYSER, control_result, na_run

PHYSICIAN = actor("physician", "t-physician")
REASON = "level 2 vial was expired; a fresh vial ran in control on the second analyser"


def test_the_month_lists_overrides_and_the_queue_with_who_and_why(db: Session) -> None:
    na_run(db, 0.0, -3.3)  # a 1-3s rejection locks NA on demo
    qc.override_lock(db, actor=PHYSICIAN, instrument="demo", test_code="NA", reason=REASON)
    unknown = control_result(db, control_id="QC9-UNKNOWN", value="140")
    wrong_unit = control_result(db, control_id="QC1-DEMO", value="140", unit="mg/dL")
    outcome = qc.take_analyser_results(
        db, actor=ANALYSER, instrument="demo", qc_result_ids=[unknown, wrong_unit]
    )
    discarded = next(p for p in outcome.problems if p.qc_result_id == wrong_unit)
    qc_queue.discard_problem(
        db, actor=PHYSICIAN, problem_id=discarded.id, note="sent in the wrong unit by a test set-up"
    )
    month = utcnow().astimezone(OSLO).date()
    start, end = report.month_bounds(month)
    actions = report.month_actions(db, start=start, end=end)
    (override,) = [a for a in actions if a.what == "lock override"]
    assert override.by == "t-physician" and REASON in override.detail and override.test_code == "NA"
    queued = [a for a in actions if a.what == "QC queue"]
    assert len(queued) == 2
    (still_open,) = [a for a in queued if "QC9-UNKNOWN" in a.detail]
    assert "is not mapped to a control lot" in still_open.detail
    assert still_open.detail.endswith("still open")
    (thrown,) = [a for a in queued if "mg/dL" in a.detail]
    assert "does not match the target's unit" in thrown.detail and thrown.by == "t-physician"
    assert thrown.detail.endswith("discarded: sent in the wrong unit by a test set-up")
    assert report.month_actions(db, start=start, end=end, instrument="other") == ()
    # ... and the PDF prints them.
    pdf = render_qc_report(report.monthly_report(db, month=month, instrument="demo"))
    text = "".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)
    assert "Locks, overrides, corrective actions, QC queue and patient-based alarms" in text
    assert "lock override" in text and "t-physician" in text and "QC9-UNKNOWN" in text
