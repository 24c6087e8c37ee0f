"""Results: one path for every result, whether from an analyser, a keyboard or a replay.

Statuses: preliminary -> awaiting_review -> verified -> corrected, and cancelled. Each change
adds an immutable `ResultVersion`; `Result` keeps the current state for the work queues.

Every change is made in three steps kept apart: load (the tube or the result, locked), judge
(`lab.results.judging`, pure: a new `ResultState` or a `Refusal`), and write
(`lab.results.writing.write_versions`, the one function that appends versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog.rules import TestRule, rule_by_id
from lab.catalog.service import ReferenceRange
from lab.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lab.orders import service as orders
from lab.results import judging
from lab.results import outbox as hl7_outbox
from lab.results.calculated import (
    CALCULATOR,
    WAITS_FOR,
    Recalculation,
    patient_facts,
    recalculated,
    waiting_inputs,
)
from lab.results.judging import ActiveRules, Refusal, active_rules
from lab.results.judging import Measurement as Measurement
from lab.results.queries import is_unremarkable, others_wait_for_inputs, results_of_tube
from lab.results.recording import Outcome as Outcome
from lab.results.recording import record as record
from lab.results.recording import record_tube as record_tube
from lab.results.state import Change, ResultState
from lab.results.writing import Write, write_versions
from lab.rules import Hold, HoldCode, ReflexResult, reflexes_for
from lab.specimens import service as specimens
from lab.tables import (
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    Specimen,
    StoredMeasurement,
    TestStatus,
)
from lab.tables.results import RELEASED, R
from lab.timeutil import as_utc, utcnow
from lab.users import service as users
from lab.users.roles import Permission


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalNotification:
    """Who was told of a critical result, when, and that the value was read back."""

    notified_person: str
    notified_at: datetime
    read_back: bool

    def text(self) -> str:
        return (
            f"told {self.notified_person} at {as_utc(self.notified_at).isoformat()}, "
            f"read back: {'yes' if self.read_back else 'no'}"
        )


# --- changes of one stored result -----------------------------------------------------------


def _change_one(session: Session, *, actor: Actor, result: Result, change: Change) -> Result:
    write_versions(
        session,
        actor=actor,
        writes=[Write(result=result, before=ResultState.of(result), changes=(change,))],
        now=utcnow(),
    )
    return result


def verify(
    session: Session,
    *,
    actor: Actor,
    result_id: int,
    critical: CriticalNotification | None = None,
    comment: str = "",
) -> Result:
    """Release a result. A critical result needs the documented call first."""
    result = locked(session, result_id)
    if result.status in RELEASED:
        raise Conflict(
            f"result {result.id} was verified already by {result.verified_by}",
            code="already_verified",
            params={"by": result.verified_by or ""},
        )
    if result.status == R.PRELIMINARY:
        raise Conflict(
            f"result {result.id} is preliminary; wait for the final result", code="preliminary"
        )
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled", code="result_cancelled")
    _not_own_typed_value(session, actor, result)
    waiting = waiting_inputs(session, result)
    if waiting:
        raise Conflict(
            f"result {result.id} is calculated from {', '.join(waiting)}, which is not verified "
            "yet; it is released together with its inputs",
            code="inputs_not_released",
            params={"tests": ", ".join(waiting)},
        )
    if ResultState.of(result).critical:
        if critical is None:
            raise InvalidInput.field(
                "critical",
                "a critical result cannot be released before the call is documented "
                "(who was told, when, and that the value was read back)",
                code="critical_call_missing",
            )
        if not critical.read_back or not critical.notified_person.strip():
            raise InvalidInput.field(
                "critical",
                "the person told must be named and the value read back",
                code="critical_call_incomplete",
            )
    current = ResultState.of(result)
    call = critical.text() if critical is not None else current.critical_notification
    state = current.but(
        status=R.VERIFIED,
        comment=comment or current.comment,
        critical_notification=call,
        verified_at=utcnow(),
        verified_by=actor.username,
    )
    change = Change(state=state, action="result.verify", author=actor.username, detail=call)
    _change_one(session, actor=actor, result=result, change=change)
    mark_ordered_test(session, result, TestStatus.VERIFIED)
    _release_calculated(session, actor=actor, result=result)
    hl7_outbox.on_result_released(session, result, event="verify")  # same transaction
    return result


def _release_calculated(session: Session, *, actor: Actor, result: Result) -> None:
    """Calculated results of the tube that waited only for this one are verified with it, so
    they reach the record together, in the same ORU (CLSI AUTO15 step 10)."""
    if not others_wait_for_inputs(session, result):
        return  # the common case: nothing calculated waits, the tube is not read
    code = rule_by_id(session, result.test_id).code
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    for other in results_of_tube(session, specimens.root_of(session, specimen)):
        if other.id == result.id or other.status != R.AWAITING_REVIEW or not other.holds:
            continue
        waits = [h for h in other.holds if h.get("key") == "waits_for"]
        if len(waits) != len(other.holds):
            continue  # held for something else too: a person looks at it
        names = {n.strip() for h in waits for n in h["params"]["tests"].split(",")}
        if names - {code}:
            continue
        current = ResultState.of(other)
        state = current.but(
            status=R.VERIFIED, holds=(), verified_at=utcnow(), verified_by=actor.username
        )
        change = Change(
            state=state,
            action="result.verify",
            author=actor.username,
            detail=f"released together with {code}",
        )
        _change_one(session, actor=actor, result=other, change=change)
        mark_ordered_test(session, other, TestStatus.VERIFIED)


# The instrument of a value a person typed in (entry page, API, a replacement before release).
BY_HAND = "manual"


def _not_own_typed_value(session: Session, actor: Actor, result: Result) -> None:
    """Four eyes: whoever typed a value in by hand (entry page, API, a replacement) does not
    release it; another reviewer does. Analyser values carry no such person."""
    state = ResultState.of(result)
    if state.instrument != BY_HAND or state.measurement_id is None:
        return
    typed = session.get(StoredMeasurement, state.measurement_id)
    if typed is not None and typed.recorded_by == actor.username:
        raise PermissionDenied(
            f"you typed in result {result.id} yourself; another reviewer must verify it",
            code="verify_own_result",
        )


def verify_with_call(
    session: Session,
    *,
    actor: Actor,
    specimen_id: int,
    result_ids: Sequence[int],
    critical: CriticalNotification | None,
    comment: str = "",
) -> list[Result]:
    """One telephone call that covered several critical results of a tube: each result chosen
    is verified with that same record (the caller's transaction makes it all or none).

    In id order: a calculated result (a corrected calcium) is stored after its inputs and is
    released with them, never before them."""
    chosen = sorted(set(result_ids))
    if not chosen:
        raise InvalidInput.field(
            "result_id", "choose the results the call covered", code="call_results_missing"
        )
    owners = {
        row.id: row.specimen_id
        for row in session.execute(
            select(Result.id, Result.specimen_id).where(Result.id.in_(chosen))
        )
    }
    if any(owners.get(result_id) != specimen_id for result_id in chosen):
        raise InvalidInput.field("result_id", "a result of another tube", code="call_other_tube")
    return [
        verify(session, actor=actor, result_id=result_id, critical=critical, comment=comment)
        for result_id in chosen
    ]


def verify_unremarkable(session: Session, *, actor: Actor, accession_number: str) -> list[Result]:
    """Verify every result of a specimen that awaits review and carries no flag at all."""
    specimen = specimens.get_by_accession(session, accession_number)
    verified = []
    for result in results_of_tube(session, specimen):
        if result.status != R.AWAITING_REVIEW:
            continue
        if not is_unremarkable(result):
            continue
        verified.append(verify(session, actor=actor, result_id=result.id))
    return verified


def correct(
    session: Session,
    *,
    actor: Actor,
    result_id: int,
    value: str,
    reason: str,
    comment: str = "",
    rules: ActiveRules | None = None,
) -> Result:
    """Correct a released result: a new version, flagged afresh, sent to the record as `C`."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a correction needs a reason", code="reason_missing")
    result = locked(session, result_id)
    if result.status not in RELEASED:
        raise Conflict(
            f"result {result.id} is {result.status}; only released results are corrected",
            code="not_released",
            params={"status": result.status},
        )
    test = rule_by_id(session, result.test_id)
    specimen = session.get(Specimen, result.specimen_id)
    patient = session.get(Patient, result.patient_id)
    assert specimen is not None and patient is not None  # foreign keys
    parsed = judging.parse_value(test, value)
    if isinstance(parsed, Refusal):
        raise parsed.error()
    current = ResultState.of(result)
    state = judging.with_value(
        current.but(
            status=R.CORRECTED,
            comment=comment or current.comment,
            critical_notification="",
            verified_at=utcnow(),
            verified_by=actor.username,
        ),
        test,
        patient_facts(patient, specimens.root_of(session, specimen)),
        parsed,
    )
    change = Change(
        state=state, action="result.correct", author=actor.username, reason=reason, detail=reason
    )
    _change_one(session, actor=actor, result=result, change=change)
    hl7_outbox.on_result_released(session, result, event="correct")  # same transaction
    rules = rules if rules is not None else active_rules(session)
    recalculate(session, actor=actor, result=result, rules=rules)
    withdraw_reflexes(session, actor=actor, result=result, state=state, rules=rules)
    return result


def recalculate(
    session: Session, *, actor: Actor, result: Result, rules: ActiveRules, chosen: str = ""
) -> None:
    """A corrected input, or another measurement of an input chosen: its calculated tests on the
    tube are calculated again from what the inputs now report. A released one is corrected
    (the record gets the correction); one not yet released takes the new value and keeps
    waiting for its inputs."""
    code = rule_by_id(session, result.test_id).code
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    root = specimens.root_of(session, specimen)
    of_tube = {r.test_id: r for r in results_of_tube(session, root)}
    why = f"recalculated: {code} corrected" + (f"; {chosen}" if chosen else "")
    for found in recalculated(session, result=result, rules=rules):
        test, calculation = found.test, found.calculation
        calculated = of_tube.get(test.id)
        if calculated is None or calculated.status == R.CANCELLED:
            continue
        if not calculation.calculated:
            cancel(
                session, actor=actor, result_id=calculated.id, reason=f"{why}; {calculation.reason}"
            )
        elif calculated.status in RELEASED:
            if ResultState.of(calculated).value != calculation.reported:
                correct(
                    session,
                    actor=actor,
                    result_id=calculated.id,
                    value=calculation.reported,
                    reason=why,
                    rules=rules,
                )
        else:
            _follow_inputs(
                session, actor=actor, calculated=calculated, found=found, why=why, changed=code
            )


def _follow_inputs(
    session: Session,
    *,
    actor: Actor,
    calculated: Result,
    found: Recalculation,
    why: str,
    changed: str,
) -> None:
    """A calculated result not yet released takes the value its inputs now give: the earlier
    calculated measurement with that value is reported again, or a new one is stored. It
    waits for its inputs not yet released, or, when none waits, for a person."""
    test = rule_by_id(session, calculated.test_id)
    parsed = judging.parse_value(test, found.calculation.reported)
    if isinstance(parsed, Refusal):  # pragma: no cover - the formula gives the test's unit
        raise parsed.error()
    current = ResultState.of(calculated)
    specimen = session.get(Specimen, calculated.specimen_id)
    patient = session.get(Patient, calculated.patient_id)
    assert specimen is not None and patient is not None  # foreign keys
    tests = ", ".join(found.waiting)
    hold = (
        Hold(
            code=HoldCode.RULE,
            text=f"{WAITS_FOR} {tests}",
            key="waits_for",
            params={"tests": tests},
        )
        if found.waiting
        else Hold(code=HoldCode.RULE, text=why, key="recalculated", params={"test": changed})
    )
    state = judging.with_value(
        current.but(
            status=R.AWAITING_REVIEW,
            comparator=None,
            holds=(hold,),
            verified_at=None,
            verified_by=None,
        ),
        test,
        patient_facts(patient, specimens.root_of(session, specimen)),
        parsed,
    )
    earlier = next(
        (
            m
            for m in calculated.measurements
            if m.value_numeric == state.value_numeric and m.comparator == state.comparator
        ),
        None,
    )
    new = None
    if earlier is not None:
        state = state.but(measurement_id=earlier.id, observed_at=earlier.observed_at)
    else:
        new = judging.new_measurement(
            state,
            Measurement(
                accession_number=specimen.accession_number,
                test_code=test.code,
                value=found.calculation.reported,
                unit=test.unit,
                observed_at=current.observed_at,
                instrument=CALCULATOR,
            ),
            specimen_id=calculated.specimen_id,
            earlier=list(calculated.measurements),
        )
    if state == current:
        return
    change = Change(
        state=state,
        action="result.record" if new is not None else "result.choose",
        author=actor.username,
        reason=why,
        detail=why,
        measurement=new,
    )
    _change_one(session, actor=actor, result=calculated, change=change)


def withdraw_reflexes(
    session: Session, *, actor: Actor, result: Result, state: ResultState, rules: ActiveRules
) -> None:
    """A corrected result that no longer meets a reflex rule's condition: the reflex test it
    added, not yet run, is cancelled."""
    if rules.reflex is None:
        return
    code = rule_by_id(session, result.test_id).code
    still = {
        rule.id
        for rule in reflexes_for(
            rules.reflex,
            ReflexResult(
                test_code=code,
                value=state.value_numeric,
                comparator=state.comparator,
                reference_low=state.reference_low,
                reference_high=state.reference_high,
                flags=(*state.flags, *state.instrument_flags.replace(",", " ").split()),
            ),
        )
    }
    specimen = session.get(Specimen, result.specimen_id)
    assert specimen is not None  # foreign key
    root = specimens.root_of(session, specimen)
    order = session.get(Order, root.order_id)
    assert order is not None  # foreign key
    for rule in rules.reflex.rules:
        if rule.test != code or rule.id in still:
            continue
        # On the same tube, or on a new tube the reflex asked for (lab/results/lab_added.py).
        for ordered in order.tests:
            if (
                ordered.added_by_rule.startswith(f"reflex {rule.id} ")
                and ordered.status == TestStatus.ORDERED
            ):
                orders.cancel_tests(
                    session,
                    actor=actor,
                    filler=order.filler_order_number,
                    codes=[rule.add],
                    reason=f"reflex {rule.id} withdrawn: {code} corrected and no longer meets "
                    "the condition",
                )


def cancel(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Withdraw a result (e.g. the specimen proved unusable); a released one is retracted."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a cancellation needs a reason", code="reason_missing")
    result = locked(session, result_id)
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled already", code="result_cancelled")
    state = ResultState.of(result).but(status=R.CANCELLED)
    change = Change(
        state=state, action="result.cancel", author=actor.username, reason=reason, detail=reason
    )
    _change_one(session, actor=actor, result=result, change=change)
    mark_ordered_test(session, result, TestStatus.CANCELLED)
    hl7_outbox.on_result_released(session, result, event="cancel")  # same transaction
    return result


def choose(
    session: Session,
    *,
    actor: Actor,
    result_id: int,
    measurement_id: int,
    reason: str = "",
    rules: ActiveRules | None = None,
) -> Result:
    """Report another of the test's measurements. Before release it becomes the value to
    verify; after release it is a correction (with its reason) and the record gets it as `C`.
    The tube's calculated tests that read it are calculated again from the chosen value."""
    result = locked(session, result_id)
    measurement = session.get(StoredMeasurement, measurement_id, with_for_update=True)
    if measurement is None or measurement.result_id != result.id:
        raise NotFound(f"result {result.id} has no measurement {measurement_id}")
    current = ResultState.of(result)
    if current.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled", code="result_cancelled")
    if current.measurement_id == measurement.id:
        raise Conflict(f"measurement {measurement.number} is the one reported already")
    if current.instrument == CALCULATOR:
        raise Conflict(
            f"result {result.id} is calculated: it follows the measurements chosen for its inputs",
            code="calculated_follows_inputs",
        )
    released = current.status in RELEASED
    if released:
        users.require(actor, Permission.CORRECT_RESULTS)  # it is a correction
    if released and not reason.strip():
        raise InvalidInput.field(
            "reason", "reporting another measurement of a released result needs a reason"
        )
    test = rule_by_id(session, result.test_id)
    specimen = session.get(Specimen, result.specimen_id)
    patient = session.get(Patient, result.patient_id)
    assert specimen is not None and patient is not None  # foreign keys
    value = judging.value_of(measurement)
    now = utcnow()
    base = current.but(
        unit=measurement.unit,
        instrument_flags=measurement.instrument_flags,
        instrument=measurement.instrument,
        operator=measurement.operator,
        observed_at=measurement.observed_at,
        comment=measurement.comment,
        critical_notification="",
        measurement_id=measurement.id,
    )
    if released:
        base = base.but(status=R.CORRECTED, verified_at=now, verified_by=actor.username)
    else:
        base = base.but(status=R.PRELIMINARY if measurement.preliminary else R.AWAITING_REVIEW)
    state = judging.with_value(
        base, test, patient_facts(patient, specimens.root_of(session, specimen)), value
    )
    why = reason.strip() or f"measurement {measurement.number} ({measurement.origin}) chosen"
    change = Change(
        state=state,
        action="result.correct" if released else "result.choose",
        author=actor.username,
        reason=why,
        detail=f"measurement {measurement.number} reported: {why}",
    )
    _change_one(session, actor=actor, result=result, change=change)
    _mark_reviewed(session, actor=actor, result=result, now=now)
    if released:
        hl7_outbox.on_result_released(session, result, event="correct")  # same transaction
    recalculate(
        session,
        actor=actor,
        result=result,
        rules=rules if rules is not None else active_rules(session),
        chosen=f"measurement {measurement.number} chosen",
    )
    return result


def set_aside(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Keep what a released result reports: its further measurements have been looked at."""
    if not reason.strip():
        raise InvalidInput.field(
            "reason", "say why the released value stands", code="reason_missing"
        )
    result = locked(session, result_id)
    looked_at = _mark_reviewed(session, actor=actor, result=result, now=utcnow())
    if not looked_at:
        raise Conflict(f"result {result.id} has no further measurement waiting for a look")
    audit.record(
        session,
        actor=actor,
        action="result.measurements_reviewed",
        entity_type="result",
        entity_id=result.id,
        patient_id=result.patient_id,
        after={"measurements": looked_at},
        detail=reason.strip(),
    )
    return result


def _mark_reviewed(session: Session, *, actor: Actor, result: Result, now: datetime) -> list[int]:
    """Mark the result's measurements that waited for a look; returns their numbers."""
    waiting = [m for m in result.measurements if m.after_release and m.reviewed_at is None]
    for measurement in waiting:
        measurement.reviewed_at = now
        measurement.reviewed_by = actor.username
    return [m.number for m in waiting]


def reference_for(
    test: TestRule | LabTest, patient: Patient, specimen: Specimen
) -> ReferenceRange | None:
    """The reference interval that applies: the patient's sex and age on the (Oslo) day the
    specimen was collected, or today when that is not known."""
    facts = patient_facts(patient, specimen)
    return catalog.reference_range(test, sex=facts.sex, age_days=facts.age_days)


def locked(session: Session, result_id: int) -> Result:
    result = session.get(Result, result_id, with_for_update=True)
    if result is None:
        raise NotFound(f"no result {result_id}", code="result_unknown", params={"id": result_id})
    return result


def mark_ordered_test(session: Session, result: Result, status: str) -> None:
    ordered = session.get(OrderedTest, result.ordered_test_id)
    if ordered is None:
        return
    ordered.status = status
    order = session.get(Order, ordered.order_id)
    if order is not None:
        orders.refresh_status(order)
