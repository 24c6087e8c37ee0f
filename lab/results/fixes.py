"""Fix before release: replace, rerun or discard a result that nobody has verified yet.

A wrong value, typed or sent by an analyser, is put right before a person releases it, so the
record never gets it and nobody has to verify a wrong value in order to correct it:

- **replace**: a person gives the right value and the reason. It is stored as a measurement by
  hand through the path every result takes (`recording.record`: checked, flagged, judged; the
  tube's calculated tests and reflexes follow), then a version says why; it waits for review.
- **rerun**: the test goes back to the analyser (its host query and the bench's worklist list it
  again) and the result waits, preliminary, for the new measurement. The old measurement stays
  beside it; when the two differ the reviewer chooses (`service.choose`).
- **discard**: the value is withdrawn and the test cancelled, with the reason. The record is told
  that the test could not be done (OBX-11 `X`, no value), never the value.

Each fix is one new version with its reason (`writing.write_versions` audits it as
`result.replace`, `result.rerun` or `result.discard`). Who may: replace and rerun, whoever
enters results and reads patient data (technicians, reviewers, lab physicians; not an
analyser's account); discard, whoever verifies (reviewers, lab physicians).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog.rules import rule_by_id
from lab.errors import Conflict, InvalidInput
from lab.results import judging, service
from lab.results import outbox as hl7_outbox
from lab.results.calculated import CALCULATOR
from lab.results.flags import NumericValue
from lab.results.judging import Measurement, Refusal, active_rules
from lab.results.state import Change, ResultState
from lab.results.writing import Write, write_versions
from lab.rules import HoldCode
from lab.specimens import service as specimens
from lab.tables import (
    SPECIMEN_FINISHED,
    DownloadStatus,
    OrderDownload,
    Result,
    Specimen,
    TestStatus,
)
from lab.tables.results import RELEASED, R
from lab.timeutil import utcnow
from lab.users import service as users
from lab.users.roles import Permission

# The instrument of a value typed in by a person (as on the result entry page).
BY_HAND = "manual"
# The hold the recording path puts on a result measured twice with different values: after a
# replacement the person has already chosen (the text is `recording._decide`'s).
_CHOOSE_HOLD_END = "with different values: choose the one to report"


def replace(
    session: Session,
    *,
    actor: Actor,
    result_id: int,
    value: str,
    reason: str,
    comment: str = "",
) -> Result:
    """Report `value` instead of the result's current one; the old measurement is kept."""
    _may(actor, Permission.ENTER_RESULTS, Permission.READ_PATIENT_DATA)
    why = _reason(reason)
    result = service.locked(session, result_id)
    before = _unreleased(result)
    if before.instrument == CALCULATOR:
        raise Conflict(
            f"result {result.id} is calculated; fix its inputs instead", code="fix_calculated"
        )
    specimen = _tube(session, result)
    test = rule_by_id(session, result.test_id)
    parsed = judging.parse_value(test, value)
    if isinstance(parsed, Refusal):
        raise parsed.error()
    if _same(parsed, before):
        raise Conflict(
            f"{test.code} is {before.value} already",
            code="fix_same_value",
            params={"code": test.code},
        )
    outcome = service.record(
        session,
        actor=actor,
        measurement=Measurement(
            accession_number=specimen.accession_number,
            test_code=test.code,
            value=value,
            instrument=BY_HAND,
            operator=actor.username,
            comment=comment.strip(),
        ),
    )
    if not outcome.changed:
        raise Conflict(
            f"{test.code} was measured as {value.strip()} before; choose that measurement",
            code="fix_measured_before",
            params={"code": test.code, "value": value.strip()},
        )
    session.refresh(result)
    measured = ResultState.of(result)
    state = measured.but(
        status=R.AWAITING_REVIEW,
        holds=tuple(
            hold
            for hold in measured.holds
            if not (hold.code is HoldCode.RULE and hold.text.endswith(_CHOOSE_HOLD_END))
        ),
        judgement=_noted(measured, "replaced", why, actor, previous=before.value),
    )
    _write(
        session,
        actor,
        result,
        Change(
            state=state,
            action="result.replace",
            author=actor.username,
            reason=why,
            detail=f"{before.value} replaced by {measured.value}: {why}",
        ),
    )
    service.withdraw_reflexes(
        session, actor=actor, result=result, state=state, rules=active_rules(session)
    )
    return result


def rerun(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Send the test back to the analyser; the result waits, preliminary, for the new value."""
    _may(actor, Permission.ENTER_RESULTS, Permission.READ_PATIENT_DATA)
    why = _reason(reason)
    result = service.locked(session, result_id)
    current = _unreleased(result)
    if current.instrument == CALCULATOR:
        raise Conflict(
            f"result {result.id} is calculated; rerun its inputs instead", code="fix_calculated"
        )
    root = specimens.root_of(session, _tube(session, result))
    if root.status in SPECIMEN_FINISHED:
        raise Conflict(
            f"{root.accession_number} is {root.status}; it cannot be measured again",
            code="specimen_closed",
            params={"number": root.accession_number, "status": root.status},
        )
    state = current.but(
        status=R.PRELIMINARY, judgement=_noted(current, "rerun", why, actor, previous=current.value)
    )
    _write(
        session,
        actor,
        result,
        Change(
            state=state,
            action="result.rerun",
            author=actor.username,
            reason=why,
            detail=f"rerun requested ({current.value} kept): {why}",
        ),
    )
    service.mark_ordered_test(session, result, TestStatus.IN_PROGRESS)
    _push_again(session, root)
    session.flush()
    specimens.note_result(session, actor=actor, specimen=root)  # back on the worklist
    return result


def _push_again(session: Session, root: Specimen) -> None:
    """An analyser that gets its orders pushed (order download) was sent this tube's tests once;
    what was sent no longer stands, so the tube's pending tests are pushed to it again."""
    tubes = select(Specimen.id).where(or_(Specimen.id == root.id, Specimen.parent_id == root.id))
    session.execute(
        update(OrderDownload)
        .where(OrderDownload.specimen_id.in_(tubes), OrderDownload.status == DownloadStatus.SENT)
        .values(test_codes=[])
    )


def discard(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Withdraw the value and cancel the test; the record learns it could not be done."""
    _may(actor, Permission.VERIFY_RESULTS)
    why = _reason(reason)
    result = service.locked(session, result_id)
    current = _unreleased(result)
    state = current.but(
        status=R.CANCELLED,
        judgement=_noted(current, "discarded", why, actor, previous=current.value),
    )
    _write(
        session,
        actor,
        result,
        Change(
            state=state,
            action="result.discard",
            author=actor.username,
            reason=why,
            detail=f"{current.value} discarded before release: {why}",
        ),
    )
    service.mark_ordered_test(session, result, TestStatus.CANCELLED)
    rules = active_rules(session)
    # Calculated tests that read it are worked out again (without it: cancelled), and reflex
    # tests it added and nobody has run yet are withdrawn.
    service.recalculate(session, actor=actor, result=result, rules=rules)
    service.withdraw_reflexes(
        session,
        actor=actor,
        result=result,
        state=state.but(value_numeric=None, comparator=None, value_text=None, flags=()),
        rules=rules,
    )
    hl7_outbox.on_result_released(session, result, event="cancel")  # same transaction
    session.flush()
    specimens.note_result(
        session, actor=actor, specimen=specimens.root_of(session, _tube(session, result))
    )
    return result


def _same(parsed: NumericValue | str, state: ResultState) -> bool:
    if isinstance(parsed, NumericValue):
        return parsed.value == state.value_numeric and parsed.comparator == state.comparator
    return state.value_numeric is None and parsed == (state.value_text or "")


def _may(actor: Actor, *needed: Permission) -> None:
    for permission in needed:
        users.require(actor, permission)


def _reason(reason: str) -> str:
    why = reason.strip()
    if not why:
        raise InvalidInput.field("reason", "say why the result is fixed", code="reason_missing")
    return why


def _unreleased(result: Result) -> ResultState:
    """The result's state, when it may still be fixed before release."""
    if result.status in RELEASED:
        raise Conflict(
            f"result {result.id} is released; a lab physician corrects it",
            code="fix_released",
        )
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled", code="result_cancelled")
    return ResultState.of(result)


def _tube(session: Session, result: Result) -> Specimen:
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    return specimen


def _noted(
    state: ResultState, kind: str, reason: str, actor: Actor, *, previous: str
) -> dict[str, Any]:
    """The judgement shown to the reviewer, with what was fixed, by whom and why."""
    judgement = dict(state.judgement or {})
    judgement["fix"] = {
        "kind": kind,
        "reason": reason,
        "by": actor.username,
        "at": utcnow().isoformat(),
        "previous": previous,
    }
    return judgement


def _write(session: Session, actor: Actor, result: Result, change: Change) -> None:
    write_versions(
        session,
        actor=actor,
        writes=[Write(result=result, before=ResultState.of(result), changes=(change,))],
        now=utcnow(),
    )
