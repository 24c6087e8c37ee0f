"""Fix before release: replace, rerun, discard; the old values kept, the record never told."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.errors import Conflict, InvalidInput, PermissionDenied
from lab.results import fixes
from lab.results import service as results
from lab.results.queries import stored
from lab.specimens import service as specimens
from lab.tables import (
    AuditEvent,
    Hl7Message,
    OrderedTest,
    ReportedResult,
    Result,
    Specimen,
    TestStatus,
)
from lab.tables.results import R
from lab.users.roles import Role
from tests.conftest import actor
from tests.results.test_service import ANALYSER, BIO, LEGE, measure, serum_accession

REVIEWER = actor(Role.REVIEWER)


def _trail(db: Session, result_id: int) -> list[tuple[str, str]]:
    return [
        (e.action, e.detail)
        for e in db.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == "result", AuditEvent.entity_id == str(result_id))
            .order_by(AuditEvent.id)
        )
    ]


def _messages(db: Session) -> list[bytes]:
    db.flush()
    return [m.raw for m in db.scalars(select(Hl7Message).where(Hl7Message.direction == "out"))]


def test_replace_reports_the_typed_value_and_keeps_the_old_one(db: Session) -> None:
    number = serum_accession(db, "FX-1", ["NA", "K"])
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "9.9"))
    assert outcome.result_id is not None
    fixed = fixes.replace(
        db, actor=BIO, result_id=outcome.result_id, value="4,1", reason="typed on the wrong tube"
    )
    assert fixed.status == R.AWAITING_REVIEW
    assert fixed.value_numeric is not None and str(fixed.value_numeric) == "4.1"
    assert fixed.flags == []
    # The analyser's measurement is kept beside the typed one, and no hold asks to choose.
    assert [str(m.value_numeric) for m in fixed.measurements] == ["9.9", "4.1"]
    assert [m.instrument for m in fixed.measurements] == ["cobas-1", "manual"]
    assert fixed.holds == [h for h in fixed.holds if "choose" not in h["text"]]
    current = fixed.versions[-1]
    assert current.reason == "typed on the wrong tube" and current.author == BIO.username
    assert current.judgement is not None and current.judgement["fix"]["kind"] == "replaced"
    assert current.judgement["fix"]["previous"] == "9.9"
    actions = [action for action, _ in _trail(db, fixed.id)]
    assert actions == ["result.record", "result.record", "result.replace"]
    assert "9.9 replaced by 4.1: typed on the wrong tube" in _trail(db, fixed.id)[-1][1]
    # Verified, the record receives the replacement, never the wrong value.
    results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    na = db.scalar(
        select(Result).where(Result.specimen_id == fixed.specimen_id, Result.id != fixed.id)
    )
    assert na is not None
    results.verify(db, actor=LEGE, result_id=na.id)
    results.verify(db, actor=LEGE, result_id=fixed.id)
    sent = b"".join(_messages(db))
    assert b"|4.1|" in sent and b"9.9" not in sent


def test_replace_refuses_what_it_must(db: Session) -> None:
    number = serum_accession(db, "FX-2", ["NA", "K"])
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "4.1"))
    assert outcome.result_id is not None
    rid = outcome.result_id
    with pytest.raises(InvalidInput) as missing:
        fixes.replace(db, actor=BIO, result_id=rid, value="4.2", reason="  ")
    assert missing.value.code == "reason_missing"
    with pytest.raises(InvalidInput) as bad:
        fixes.replace(db, actor=BIO, result_id=rid, value="-4", reason="typo")
    assert bad.value.code == "value_not_number"
    with pytest.raises(Conflict) as same:
        fixes.replace(db, actor=BIO, result_id=rid, value="4,1", reason="typo")
    assert same.value.code == "fix_same_value"
    with pytest.raises(PermissionDenied):
        fixes.replace(db, actor=ANALYSER, result_id=rid, value="4.2", reason="typo")
    with pytest.raises(PermissionDenied):
        fixes.replace(db, actor=actor(Role.ADMIN), result_id=rid, value="4.2", reason="typo")
    results.verify(db, actor=LEGE, result_id=rid)
    with pytest.raises(Conflict) as released:
        fixes.replace(db, actor=LEGE, result_id=rid, value="4.2", reason="typo")
    assert released.value.code == "fix_released"
    assert stored(db, outcome).version == 2  # recorded, verified: nothing else was written


def test_rerun_sends_the_test_back_to_the_analyser(db: Session) -> None:
    number = serum_accession(db, "FX-3", ["K"])
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "6.9"))
    assert outcome.result_id is not None
    tube = specimens.get_by_accession(db, number)
    assert tube.status == "completed" and specimens.pending_tests(db, tube) == []
    fixed = fixes.rerun(db, actor=BIO, result_id=outcome.result_id, reason="haemolysed? rerun")
    assert fixed.status == R.PRELIMINARY
    db.flush()
    db.refresh(tube)
    # On the worklist and in the host query again; the review queue no longer has it.
    assert tube.status == "in_progress"
    assert [t.test.code for t in specimens.pending_tests(db, tube)] == ["K"]
    ordered = db.get(OrderedTest, fixed.ordered_test_id)
    assert ordered is not None and ordered.status == TestStatus.IN_PROGRESS
    with pytest.raises(Conflict) as waiting:
        results.verify(db, actor=LEGE, result_id=fixed.id)
    assert waiting.value.code == "preliminary"
    assert _trail(db, fixed.id)[-1][0] == "result.rerun"
    # The rerun arrives: both measurements are kept and the reviewer chooses between them.
    rerun = measure(number, "K", "4.4").__class__(
        accession_number=number, test_code="K", value="4.4", instrument="cobas-1"
    )
    again = results.record(db, actor=ANALYSER, measurement=rerun)
    assert again.result_id == fixed.id
    db.refresh(fixed)
    assert fixed.status == R.AWAITING_REVIEW and str(fixed.value_numeric) == "4.4"
    assert [str(m.value_numeric) for m in fixed.measurements] == ["6.9", "4.4"]
    assert any("choose" in hold["text"] for hold in fixed.holds)


def test_rerun_of_a_rejected_tube_is_refused(db: Session) -> None:
    number = serum_accession(db, "FX-4", ["NA", "K"])
    outcome = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "6.9"))
    assert outcome.result_id is not None
    tube = db.scalar(select(Specimen).where(Specimen.accession_number == number))
    assert tube is not None
    tube.status = "rejected"
    with pytest.raises(Conflict) as closed:
        fixes.rerun(db, actor=BIO, result_id=outcome.result_id, reason="again")
    assert closed.value.code == "specimen_closed"


def test_discard_withdraws_the_value_and_the_record_never_gets_it(db: Session) -> None:
    number = serum_accession(db, "FX-5", ["NA", "K"])
    k = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "9.7"))
    na = results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    assert k.result_id is not None and na.result_id is not None
    with pytest.raises(PermissionDenied):
        fixes.discard(db, actor=BIO, result_id=k.result_id, reason="haemolysed")
    fixed = fixes.discard(db, actor=REVIEWER, result_id=k.result_id, reason="haemolysed")
    assert fixed.status == R.CANCELLED
    ordered = db.get(OrderedTest, fixed.ordered_test_id)
    assert ordered is not None and ordered.status == TestStatus.CANCELLED
    assert _trail(db, fixed.id)[-1] == (
        "result.discard",
        "9.7 discarded before release: haemolysed",
    )
    # The value stays in the result's history, never in a message.
    assert [str(v.value_numeric) for v in fixed.versions] == ["9.7", "9.7"]
    with pytest.raises(Conflict):
        results.verify(db, actor=LEGE, result_id=fixed.id)
    results.verify(db, actor=LEGE, result_id=na.result_id)
    sent = _messages(db)
    assert sent, "the order is complete: its report is queued"
    joined = b"".join(sent)
    assert b"|140|" in joined and b"9.7" not in joined
    observations = [line.split(b"|") for line in joined.split(b"\r") if line.startswith(b"OBX")]
    # OBX-11 `X` for the potassium, without a value (OBX-5 empty).
    assert [(obx[3].split(b"^")[3], obx[5], obx[11]) for obx in observations] == [
        (b"K", b"", b"X"),
        (b"NA", b"140", b"F"),
    ]
    db.flush()
    reported = db.scalars(select(ReportedResult).where(ReportedResult.result_id == fixed.id)).all()
    assert [r.observation_status for r in reported] == ["X"]
    with pytest.raises(Conflict) as again:
        fixes.discard(db, actor=REVIEWER, result_id=fixed.id, reason="twice")
    assert again.value.code == "result_cancelled"
