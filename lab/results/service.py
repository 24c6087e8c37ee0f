"""Results: one path for every result, whether from an analyser, a keyboard or a replay.

Statuses: preliminary -> awaiting_review -> verified -> corrected, and cancelled. Each change
adds an immutable `ResultVersion`; `Result` keeps the current state for the work queues.

Every change is made in three steps kept apart: load (the tube or the result, locked), judge
(`lab.results.judging`, pure: a new `ResultState` or a `Refusal`), and write
(`lab.results.writing.write_versions`, the one function that appends versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog.rules import TestRule, rule_by_id, snapshot
from lab.catalog.service import ReferenceRange
from lab.errors import Conflict, InvalidInput, LabError, NotFound
from lab.orders import service as orders
from lab.patients import service as patients
from lab.results import judging
from lab.results import outbox as hl7_outbox
from lab.results.judging import ActiveRules, PatientFacts, Refusal, TubeFacts, active_rules
from lab.results.judging import Measurement as Measurement
from lab.results.queries import is_unremarkable, results_of_tube
from lab.results.state import Change, NewMeasurement, NewResult, ResultState
from lab.results.writing import Write, write_versions
from lab.rules import Hold, HoldCode, PreviousResult, RuleSet
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import (
    SPECIMEN_FINISHED,
    TEST_PENDING,
    LabTest,
    Order,
    OrderedTest,
    Patient,
    Result,
    Specimen,
    StoredMeasurement,
    TestStatus,
)
from lab.tables.results import RELEASED, MeasurementOrigin, R
from lab.timeutil import OSLO, as_utc, utcnow
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What became of one measurement: stored (`changed`), a repeat, or refused with a reason."""

    result_id: int | None  # None when refused
    changed: bool  # False when the same result arrived again, or when it was refused
    status: str
    flags: tuple[str, ...]
    refusal: Refusal | None = None

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def record(
    session: Session,
    *,
    actor: Actor,
    measurement: Measurement,
    rules: ActiveRules | None = None,
) -> Outcome:
    """Store one measured result; a refusal is raised as the project's error (keyboard, API)."""
    (outcome,) = record_tube(session, actor=actor, measurements=[measurement], rules=rules)
    if outcome.refusal is not None:
        raise outcome.refusal.error()
    return outcome


@dataclass(slots=True)
class _Tube:
    """One tube as the result path needs it, loaded once and locked."""

    specimen: Specimen  # the tube measured (an aliquot or the primary)
    root: Specimen  # the primary tube, whose ordered tests the results belong to
    patient: PatientFacts
    ordered: dict[int, OrderedTest]  # by test id, locked FOR UPDATE
    results: dict[int, Result]  # by ordered test id


def _load_tube(session: Session, accession_number: str) -> _Tube | Refusal:
    try:
        specimen = specimens.get_by_accession(session, accession_number)
    except LabError as error:
        return Refusal(field="accession_number", message=error.message, kind="not_found")
    if specimen.status in SPECIMEN_FINISHED:
        return Refusal(
            field="accession_number",
            message=f"{specimen.accession_number} is {specimen.status}; no results can be added",
            kind="conflict",
        )
    root = specimens.root_of(session, specimen)
    # Locked, so two connections cannot record the same test at once.
    ordered = {
        t.test_id: t
        for t in session.scalars(
            select(OrderedTest).where(OrderedTest.specimen_id == root.id).with_for_update()
        )
    }
    stored = {
        r.ordered_test_id: r
        for r in session.scalars(
            select(Result)
            .where(Result.ordered_test_id.in_([t.id for t in ordered.values()]))
            # Locked too: a verification committed meanwhile must not be written over.
            .with_for_update()
        )
    }
    patient = session.get(Patient, specimen.patient_id)
    if patient is None:
        raise NotFound(f"the patient of {specimen.accession_number} is missing")
    return _Tube(
        specimen=specimen,
        root=root,
        patient=_patient_facts(patient, root),
        ordered=ordered,
        results=stored,
    )


def _tube_facts(
    session: Session,
    tube: _Tube,
    tests: Sequence[TestRule],
    ruleset: RuleSet | None,
    measured_at: datetime,
) -> TubeFacts:
    """What the judgement needs beyond the results: the previous result of each test that has a
    delta rule (one query for the tube), the QC locks of the analyser, the specimen's values."""
    previous: dict[int, PreviousResult] = {}
    with_delta = [
        t.id
        for t in tests
        if ruleset is not None and (rules := ruleset.for_test(t.code)) is not None and rules.delta
    ]
    if with_delta:
        measured = func.coalesce(Result.observed_at, Result.recorded_at)
        rows = session.execute(
            select(Result.test_id, Result.value_numeric, Result.comparator, measured)
            .where(
                Result.patient_id == tube.specimen.patient_id,
                Result.test_id.in_(with_delta),
                Result.status != R.CANCELLED,
                Result.value_numeric.is_not(None),
                Result.ordered_test_id.not_in([t.id for t in tube.ordered.values()]),
                measured < measured_at,
            )
            .order_by(Result.test_id, measured.desc(), Result.id.desc())
            .distinct(Result.test_id)
        ).all()
        previous = {
            test_id: PreviousResult(value=value, comparator=comparator, measured_at=at)
            for test_id, value, comparator, at in rows
        }
    codes = {test.id: test.code for test in tests}
    values = {
        codes[r.test_id]: r.value_numeric
        for r in tube.results.values()
        if r.value_numeric is not None and r.test_id in codes and r.status != R.CANCELLED
    }
    return TubeFacts(patient=tube.patient, previous=previous, specimen_results=values)


def _patient_facts(patient: Patient, specimen: Specimen) -> PatientFacts:
    """Sex, and age on the (Oslo) day the specimen was collected, or today when not known."""
    on = (specimen.collected_at or utcnow()).astimezone(OSLO).date()
    return PatientFacts(sex=patient.sex, age_days=patients.age_in_days(patient, on))


@dataclass(slots=True)
class _Pending:
    """What the measurements of one message do to one result, before it is written."""

    target: Result | NewResult
    before: ResultState | None
    measured: list[NewMeasurement | StoredMeasurement]  # every measurement, stored and new
    measured_before: int
    changes: list[Change] = field(default_factory=list)
    further: list[NewMeasurement] = field(default_factory=list)

    @property
    def current(self) -> ResultState | None:
        return self.changes[-1].state if self.changes else self.before

    def write(self) -> Write:
        return Write(
            result=self.target,
            before=self.before,
            changes=tuple(self.changes),
            further=tuple(self.further),
            measured_before=self.measured_before,
        )


def record_tube(
    session: Session,
    *,
    actor: Actor,
    measurements: Sequence[Measurement],
    rules: ActiveRules | None = None,
) -> list[Outcome]:
    """Store the results of one tube (what an analyser sends for one specimen) in one go.

    Returns one outcome per measurement, in order. A measurement the rules refuse is answered
    with its refusal and the others are stored: the caller keeps the refused ones (the
    analyser path puts them in the unmatched queue) and needs no retry. A second, different
    measurement of a test (in this message or a later one) is stored beside the first: the
    result reports the newest until a reviewer chooses another, and a result already
    released keeps what it reports while the new one waits for a look.

    Each result is judged in the same transaction by the active rule set (`rules`, read from
    the database when not given): a result with no hold is verified by autoverification, with
    the rule set version on it and in the audit, and goes to the record like any verified
    result. The tube, its ordered tests and their results are read once; the writing is one
    INSERT per table.
    """
    if not measurements:
        return []
    numbers = {accession.normalise(m.accession_number) for m in measurements}
    if len(numbers) != 1:
        raise InvalidInput.field("accession_number", "one tube at a time")
    loaded = _load_tube(session, measurements[0].accession_number)
    if isinstance(loaded, Refusal):
        return [_refused(loaded) for _ in measurements]
    tube = loaded
    rules = rules if rules is not None else active_rules(session)
    catalog_now = snapshot(session)
    now = utcnow()
    found = {
        code: catalog_now.by_code.get(code)
        for code in {m.test_code.strip().upper() for m in measurements}
    }
    facts = _tube_facts(
        session,
        tube,
        [t for t in found.values() if t is not None],
        rules.autoverification,
        max((as_utc(m.observed_at) for m in measurements if m.observed_at), default=now),
    )
    decided: list[Outcome | tuple[bool, int]] = []  # (changed, ordered test id) once written
    pending: dict[int, _Pending] = {}
    released = False
    for measurement in measurements:
        code = measurement.test_code.strip().upper()
        test = found[code]
        if test is None:
            refusal = Refusal(
                field="test_code", message=f"unknown test code {code!r}", kind="not_found"
            )
            decided.append(_refused(refusal))
            continue
        decision = _decide(
            tube, test, measurement, pending, facts, rules, author=actor.username, now=now
        )
        if isinstance(decision, Outcome):
            decided.append(decision)
            continue
        ordered, changed = decision
        decided.append((changed, ordered.id))
        work = pending.get(ordered.id)
        if changed and work is not None and work.changes:
            state = work.changes[-1].state
            if state.status in RELEASED:
                ordered.status = TestStatus.VERIFIED
                released = True
            elif state.status == R.PRELIMINARY:
                ordered.status = TestStatus.IN_PROGRESS
            else:
                ordered.status = TestStatus.RESULTED
    ids: dict[int, int] = {}
    if pending:
        written = write_versions(
            session, actor=actor, writes=[p.write() for p in pending.values()], now=now
        )
        ids = dict(zip(pending, written, strict=True))
        open_tests = sum(1 for t in tube.ordered.values() if t.status in TEST_PENDING)
        specimens.note_result(session, actor=actor, specimen=tube.root, open_tests=open_tests)
        if released:
            _released_by_rules(session, tube, now=now)
    return [
        one if isinstance(one, Outcome) else _outcome_of(tube, pending, ids, *one)
        for one in decided
    ]


def _outcome_of(
    tube: _Tube, pending: dict[int, _Pending], ids: dict[int, int], changed: bool, ordered_id: int
) -> Outcome:
    if ordered_id in pending:
        state = pending[ordered_id].current
        assert state is not None  # a new result has a change
        return Outcome(
            result_id=ids[ordered_id], changed=changed, status=state.status, flags=state.flags
        )
    result = tube.results[ordered_id]  # a repeat of a stored measurement: nothing written
    return Outcome(
        result_id=result.id, changed=False, status=result.status, flags=tuple(result.flags)
    )


def _decide(
    tube: _Tube,
    test: TestRule,
    measurement: Measurement,
    pending: dict[int, _Pending],
    facts: TubeFacts,
    rules: ActiveRules,
    *,
    author: str,
    now: datetime,
) -> Outcome | tuple[OrderedTest, bool]:
    """What one measurement does to its result: a refusal, a repeat, a new version, or a
    further measurement of a released result (added to `pending`). Returns the ordered test
    and whether anything changed."""
    ordered = tube.ordered.get(test.id)
    number = tube.specimen.accession_number
    if ordered is None:
        return _refused(
            Refusal(
                field="test_code",
                message=f"{test.code} is not ordered on {number}",
                kind="not_found",
            )
        )
    if ordered.status == TestStatus.CANCELLED:
        return _refused(
            Refusal(
                field="test_code", message=f"{test.code} on {number} was cancelled", kind="conflict"
            )
        )
    new = judging.measured_state(test, measurement, tube.patient)
    if isinstance(new, Refusal):
        return _refused(new)
    work = pending.get(ordered.id)
    if work is None:
        stored = tube.results.get(ordered.id)
        if stored is not None:
            work = _Pending(
                target=stored,
                before=ResultState.of(stored),
                measured=list(stored.measurements),
                measured_before=len(stored.measurements),
            )
        else:
            work = _Pending(
                target=NewResult(
                    ordered_test_id=ordered.id,
                    specimen_id=tube.specimen.id,
                    test_id=test.id,
                    patient_id=tube.specimen.patient_id,
                    urgency=tube.root.urgency,
                ),
                before=None,
                measured=[],
                measured_before=0,
            )
    current = work.current
    if current is not None and current.status == R.CANCELLED:
        return _refused(
            Refusal(field="value", message=f"{test.code} on {number} is cancelled", kind="conflict")
        )
    taken = judging.new_measurement(
        new, measurement, specimen_id=tube.specimen.id, earlier=work.measured
    )
    if any(taken.same_as(earlier) for earlier in work.measured):
        return ordered, False  # the same result sent again
    pending[ordered.id] = work
    work.measured.append(taken)
    if current is not None and current.status in RELEASED:
        work.further.append(taken)  # kept for review; the record keeps what it was given
        return ordered, True
    state, release = judging.judged(
        new,
        test,
        facts,
        rules.autoverification,
        flag_profile=measurement.flag_profile,
        indices=measurement.indices,
        measured_at=now,
    )
    differing = {(m.value_numeric, m.comparator, m.value_text) for m in work.measured}
    if len(differing) > 1:
        # Two measurements that disagree: a person chooses the one to report.
        state = state.but(
            holds=(
                *state.holds,
                Hold(
                    code=HoldCode.RULE,
                    text=f"measured {len(work.measured)} times with different values: "
                    "choose the one to report",
                ),
            )
        )
        release = False
    work.changes.append(
        Change(
            state=state,
            action="result.record",
            author=author,
            reason="" if taken.origin == MeasurementOrigin.FIRST else taken.origin.value,
            measurement=taken,
        )
    )
    if release:
        machine = autoverifier(state.ruleset_version)
        work.changes.append(
            Change(
                state=state.but(status=R.VERIFIED, verified_at=now, verified_by=machine.username),
                action="result.autoverify",
                author=machine.username,
                detail=f"no hold in autoverification rule set v{state.ruleset_version}",
                by=machine,
            )
        )
    return ordered, True


def autoverifier(version: int | None) -> Actor:
    """Who verifies a result no rule holds: the rule set, by its version."""
    return Actor(
        user_id=None,
        username=f"autoverification v{version}",
        roles=frozenset({"autoverification"}),
        channel="job",
    )


def _released_by_rules(session: Session, tube: _Tube, *, now: datetime) -> None:
    """Results verified by autoverification go to the record like any verified result: the
    order's outbox entry is made (or held by the release policy) in this transaction."""
    order = session.get(Order, tube.root.order_id, with_for_update=True)
    assert order is not None  # foreign key
    orders.refresh_status(order)
    hl7_outbox.on_order_verified(session, order, now=now)


def _refused(refusal: Refusal) -> Outcome:
    return Outcome(result_id=None, changed=False, status="", flags=(), refusal=refusal)


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
    result = _locked(session, result_id)
    if result.status in RELEASED:
        raise Conflict(f"result {result.id} was verified already by {result.verified_by}")
    if result.status == R.PRELIMINARY:
        raise Conflict(f"result {result.id} is preliminary; wait for the final result")
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled")
    if ResultState.of(result).critical:
        if critical is None:
            raise InvalidInput.field(
                "critical",
                "a critical result cannot be released before the call is documented "
                "(who was told, when, and that the value was read back)",
            )
        if not critical.read_back or not critical.notified_person.strip():
            raise InvalidInput.field(
                "critical", "the person told must be named and the value read back"
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
    _mark_ordered_test(session, result, TestStatus.VERIFIED)
    hl7_outbox.on_result_released(session, result, event="verify")  # same transaction
    return result


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
    session: Session, *, actor: Actor, result_id: int, value: str, reason: str, comment: str = ""
) -> Result:
    """Correct a released result: a new version, flagged afresh, sent to the record as `C`."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a correction needs a reason")
    result = _locked(session, result_id)
    if result.status not in RELEASED:
        raise Conflict(
            f"result {result.id} is {result.status}; only released results are corrected"
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
        _patient_facts(patient, specimens.root_of(session, specimen)),
        parsed,
    )
    change = Change(
        state=state, action="result.correct", author=actor.username, reason=reason, detail=reason
    )
    _change_one(session, actor=actor, result=result, change=change)
    hl7_outbox.on_result_released(session, result, event="correct")  # same transaction
    return result


def cancel(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Withdraw a result (e.g. the specimen proved unusable); a released one is retracted."""
    if not reason.strip():
        raise InvalidInput.field("reason", "a cancellation needs a reason")
    result = _locked(session, result_id)
    if result.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled already")
    state = ResultState.of(result).but(status=R.CANCELLED)
    change = Change(
        state=state, action="result.cancel", author=actor.username, reason=reason, detail=reason
    )
    _change_one(session, actor=actor, result=result, change=change)
    _mark_ordered_test(session, result, TestStatus.CANCELLED)
    hl7_outbox.on_result_released(session, result, event="cancel")  # same transaction
    return result


def choose(
    session: Session, *, actor: Actor, result_id: int, measurement_id: int, reason: str = ""
) -> Result:
    """Report another of the test's measurements. Before release it becomes the value to
    verify; after release it is a correction (with its reason) and the record gets it as `C`."""
    result = _locked(session, result_id)
    measurement = session.get(StoredMeasurement, measurement_id, with_for_update=True)
    if measurement is None or measurement.result_id != result.id:
        raise NotFound(f"result {result.id} has no measurement {measurement_id}")
    current = ResultState.of(result)
    if current.status == R.CANCELLED:
        raise Conflict(f"result {result.id} is cancelled")
    if current.measurement_id == measurement.id:
        raise Conflict(f"measurement {measurement.number} is the one reported already")
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
        base, test, _patient_facts(patient, specimens.root_of(session, specimen)), value
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
    return result


def set_aside(session: Session, *, actor: Actor, result_id: int, reason: str) -> Result:
    """Keep what a released result reports: its further measurements have been looked at."""
    if not reason.strip():
        raise InvalidInput.field("reason", "say why the released value stands")
    result = _locked(session, result_id)
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
    facts = _patient_facts(patient, specimen)
    return catalog.reference_range(test, sex=facts.sex, age_days=facts.age_days)


def _locked(session: Session, result_id: int) -> Result:
    result = session.get(Result, result_id, with_for_update=True)
    if result is None:
        raise NotFound(f"no result {result_id}")
    return result


def _mark_ordered_test(session: Session, result: Result, status: str) -> None:
    ordered = session.get(OrderedTest, result.ordered_test_id)
    if ordered is None:
        return
    ordered.status = status
    order = session.get(Order, ordered.order_id)
    if order is not None:
        orders.refresh_status(order)
