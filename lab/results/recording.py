"""Recording: what an analyser, a keyboard, the API or a replay measured, stored in one go.

`record_tube` loads the tube once (its ordered tests and results, locked; the patient; the
previous results the delta checks need), judges every measurement (`lab.results.judging`,
pure), and hands what it decided to `lab.results.writing.write_versions`. A measurement that
cannot be stored is answered with a `Refusal` in its `Outcome`; the others are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog.rules import CatalogSnapshot, TestRule, snapshot
from lab.errors import InvalidInput
from lab.results import judging, reflex_tests
from lab.results import outbox as hl7_outbox
from lab.results.calculated import CALCULATOR, WAITS_FOR, usable
from lab.results.judging import ActiveRules, Refusal, TubeFacts, active_rules
from lab.results.judging import Measurement as Measurement
from lab.results.state import Change, NewMeasurement, NewResult, ResultState
from lab.results.tube import Tube, TubeTest, add_tests, delta_tests, load_tube, tube_facts
from lab.results.writing import Write, write_versions
from lab.rules import (
    Calculation,
    Formula,
    Hold,
    HoldCode,
    ReflexResult,
    calculate,
    reflexes_for,
)
from lab.rules import Patient as FormulaPatient
from lab.rulesets import service as rulesets
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import TEST_PENDING, Result, SpecimenStatus, StoredMeasurement, TestStatus
from lab.tables.results import RELEASED, MeasurementOrigin, R
from lab.timeutil import as_utc, utcnow


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
class _Pending:
    """What the measurements of one message do to one result, before it is written."""

    target: Result | NewResult
    before: ResultState | None
    measured: list[NewMeasurement | StoredMeasurement]  # every measurement, stored and new
    measured_before: int
    changes: list[Change] = field(default_factory=list)
    further: list[NewMeasurement] = field(default_factory=list)
    # What the version in shadow decided: (index of the change it judged, release, holds).
    shadow: list[tuple[int, bool, tuple[Hold, ...]]] = field(default_factory=list)

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
    result. The tube, its ordered tests and their results are read in one statement
    (`tube.load_tube`), and everything the tube's recording writes goes in one statement
    (`writing.write_versions`).
    """
    if not measurements:
        return []
    numbers = {accession.normalise(m.accession_number) for m in measurements}
    if len(numbers) != 1:
        raise InvalidInput.field("accession_number", "one tube at a time", code="one_tube")
    rules = rules if rules is not None else active_rules(session)
    catalog_now = snapshot(session)
    now = utcnow()
    found = {
        code: catalog_now.by_code.get(code)
        for code in {m.test_code.strip().upper() for m in measurements}
    }
    tests = [t for t in found.values() if t is not None]
    loaded = load_tube(
        session,
        measurements[0].accession_number,
        delta=delta_tests(tests, (rules.autoverification, rules.shadow)),
        before=max((as_utc(m.observed_at) for m in measurements if m.observed_at), default=now),
    )
    if isinstance(loaded, Refusal):
        return [_refused(loaded) for _ in measurements]
    tube = loaded
    facts = tube_facts(
        session,
        tube,
        tests,
        {m.instrument for m in measurements if m.instrument and m.instrument != CALCULATOR},
    )
    decided: list[Outcome | tuple[bool, int]] = []  # (changed, ordered test id) once written
    pending: dict[int, _Pending] = {}
    released = False
    for measurement in measurements:
        code = measurement.test_code.strip().upper()
        test = found[code]
        if test is None:
            refusal = Refusal(
                field="test_code",
                message=f"unknown test code {code!r}",
                kind="not_found",
                code="test_unknown",
                params={"code": code},
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
        released = _follow(ordered, pending.get(ordered.id) if changed else None) or released
    if pending and (rules.formulas is not None or rules.reflex is not None):
        released = _derive(session, actor, tube, pending, facts, rules, now=now) or released
    ids: dict[int, int] = {}
    if pending:
        first = {
            key: work.target.version + 1 if isinstance(work.target, Result) else 1
            for key, work in pending.items()
        }
        open_tests = sum(1 for t in tube.ordered.values() if t.status in TEST_PENDING)
        # A tube in the lab moves with its results in the one statement; a tube not received
        # yet is received by its first result the specimens' way, after it.
        receipt = tube.root.status in (SpecimenStatus.EXPECTED, SpecimenStatus.COLLECTED)
        written = write_versions(
            session,
            actor=actor,
            writes=[p.write() for p in pending.values()],
            now=now,
            extra_audits=tube.audit_rows,
            tests=tube.test_writes(),
            move=None
            if receipt
            else specimens.move_on_result(
                actor=actor,
                specimen_id=tube.root.id,
                accession_number=tube.root.accession_number,
                patient_id=tube.root.patient_id,
                status=tube.root.status,
                open_tests=open_tests,
            ),
            # The order's row lock, taken with the writes: its release (below) reads the
            # order's other tubes as committed.
            lock_order=tube.root.order_id if released else None,
        )
        ids = dict(zip(pending, written, strict=True))
        if rules.shadow_id is not None:
            rulesets.record_shadow(
                session,
                rule_set_version_id=rules.shadow_id,
                decisions=[
                    rulesets.ShadowDecision(
                        result_id=ids[key],
                        result_version=first[key] + index,
                        autoverify=release,
                        holds=holds,
                    )
                    for key, work in pending.items()
                    for index, release, holds in work.shadow
                ],
            )
        if receipt:
            specimens.note_result(
                session, actor=actor, specimen=tube.orm_root(session), open_tests=open_tests
            )
        if released:
            # Results verified by autoverification go to the record like any verified
            # result: the order's status refreshed and its ORU queued (or held by the
            # release policy) in this transaction, in two statements at most.
            hl7_outbox.release_autoverified(session, tube.root.order_id, now=now)
    return [
        one if isinstance(one, Outcome) else _outcome_of(tube, pending, ids, *one)
        for one in decided
    ]


def _follow(ordered: TubeTest, work: _Pending | None) -> bool:
    """The ordered test follows its result's new state; True when the result was released."""
    if work is None or not work.changes:
        return False
    state = work.changes[-1].state
    if state.status in RELEASED:
        ordered.status = TestStatus.VERIFIED
        return True
    ordered.status = (
        TestStatus.IN_PROGRESS if state.status == R.PRELIMINARY else TestStatus.RESULTED
    )
    return False


# --- calculated tests and reflexes: what a recorded result adds to its tube ---------------------


def _current_states(tube: Tube, pending: dict[int, _Pending]) -> dict[int, ResultState]:
    """The newest state of every result of the tube, by test id (decided or stored)."""
    states: dict[int, ResultState] = {}
    for test_id, ordered in tube.ordered.items():
        work = pending.get(ordered.id)
        if work is not None and work.current is not None:
            states[test_id] = work.current
        elif ordered.id in tube.results:
            states[test_id] = ResultState.of(tube.results[ordered.id])
    return states


def _note(work: _Pending, key: str, name: str, text: str) -> None:
    """Write a note into the judgement of the states just decided (shown to the reviewer)."""
    for index, change in enumerate(work.changes):
        judgement = dict(change.state.judgement or {})
        notes = dict(judgement.get(key, {}))
        notes[name] = text
        judgement[key] = notes
        work.changes[index] = replace(change, state=change.state.but(judgement=judgement))


def _fired(work: _Pending) -> set[str]:
    """The reflex rules that fired on this result already (noted in its judgements)."""
    states = [change.state for change in work.changes]
    if work.before is not None:
        states.append(work.before)
    return {name for state in states for name in (state.judgement or {}).get("reflex", {})}


def _derive(
    session: Session,
    actor: Actor,
    tube: Tube,
    pending: dict[int, _Pending],
    facts: TubeFacts,
    rules: ActiveRules,
    *,
    now: datetime,
) -> bool:
    """Calculated tests whose inputs were just measured, and reflexes the new results call for,
    decided in the same transaction; True when a calculated result was released."""
    catalog_now = snapshot(session)
    by_id = catalog_now.by_id
    measured = {
        by_id[test_id].code: ordered
        for test_id, ordered in tube.ordered.items()
        if (work := pending.get(ordered.id)) is not None and work.changes
    }
    released = False
    if rules.formulas is not None:
        # Only the formulas that read a test just measured; each evaluated once, then the
        # calculated tests the tube lacks are put on it (inserted in the statement that writes
        # the results), then each result is decided.
        formulas = {f.test_code: f for code in measured for f in rules.formulas.using(code)}
        states = _current_states(tube, pending) if formulas else {}
        worked = [
            found
            for formula in formulas.values()
            if (found := _calculate(tube, pending, facts, formula, measured, catalog_now, states))
        ]
        version = rules.formulas.version
        add_tests(
            actor,
            tube,
            [
                (w.test, f"calculated {w.test.code} (formula set v{version})")
                for w in worked
                if w.test.id not in tube.ordered
            ],
        )
        for found in worked:
            released = _store_calculated(tube, pending, facts, rules, found, now=now) or released
    reflexed = {rule.test for rule in rules.reflex.rules} if rules.reflex is not None else set()
    if rules.reflex is not None and reflexed.intersection(measured):
        states = _current_states(tube, pending)
        for code, ordered in measured.items():
            if code not in reflexed:
                continue  # no reflex rule reads this test
            state = states.get(ordered.test_id)
            work = pending.get(ordered.id)
            if state is None or work is None or not work.changes:
                continue
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
            ):
                note = reflex_tests.add(
                    session,
                    actor,
                    tube,
                    rule,
                    rules.reflex.version,
                    catalog_now,
                    fired=_fired(work),
                    source=work.target.id if isinstance(work.target, Result) else None,
                    now=now,
                )
                if note is not None:
                    _note(work, "reflex", rule.id, note)
    return released


@dataclass(frozen=True, slots=True)
class _Worked:
    """A formula evaluated for the tube: its test, the value, and the inputs' states."""

    test: TestRule
    formula: Formula
    calculation: Calculation
    inputs: dict[str, ResultState]


def _calculate(
    tube: Tube,
    pending: dict[int, _Pending],
    facts: TubeFacts,
    formula: Formula,
    measured: dict[str, TubeTest],
    catalog_now: CatalogSnapshot,
    states: dict[int, ResultState],
) -> _Worked | None:
    """The formula evaluated with the tube's current results; None when there is nothing to
    store (the reason of a value not calculated is noted with the input just measured)."""
    test = catalog_now.by_code.get(formula.test_code)
    if test is None:
        return None
    inputs = {
        code: states[catalog_now.by_code[code].id]
        for code in formula.inputs
        if code in catalog_now.by_code and catalog_now.by_code[code].id in states
    }
    calculation = calculate(
        formula,
        results={
            code: state.value_numeric
            for code, state in inputs.items()
            if usable(state) and state.value_numeric is not None
        },
        patient=FormulaPatient(
            age_years=facts.patient.age_years,
            age_days=facts.patient.age_days,
            sex=facts.patient.sex,
        ),
    )
    if not calculation.calculated:
        # Not calculated (a child, unknown sex, an implausible input): the reason is shown
        # with the input that was measured.
        for code in formula.inputs:
            ordered = measured.get(code)
            work = pending.get(ordered.id) if ordered is not None else None
            if work is not None and work.changes:
                _note(work, "not_calculated", formula.test_code, calculation.reason)
        return None
    return _Worked(test=test, formula=formula, calculation=calculation, inputs=inputs)


def _store_calculated(
    tube: Tube,
    pending: dict[int, _Pending],
    facts: TubeFacts,
    rules: ActiveRules,
    found: _Worked,
    *,
    now: datetime,
) -> bool:
    """The calculated value as a measurement of its test on the tube, held while an input
    waits for a person; True when it was released."""
    test, inputs = found.test, found.inputs
    ordered = tube.ordered.get(test.id)
    if ordered is None or ordered.status == TestStatus.CANCELLED:
        return False
    taken_at = [s.observed_at for s in inputs.values() if s.observed_at is not None]
    measurement = Measurement(
        accession_number=tube.specimen.accession_number,
        test_code=test.code,
        value=found.calculation.reported,
        unit=test.unit,
        observed_at=max(taken_at) if taken_at else None,
        instrument=CALCULATOR,
        comment=found.formula.source,
    )
    decision = _decide(tube, test, measurement, pending, facts, rules, author=CALCULATOR, now=now)
    if isinstance(decision, Outcome):
        return False
    work = pending.get(ordered.id)
    if work is None or not work.changes:
        return False
    waiting = [code for code, state in inputs.items() if state.status not in RELEASED]
    if waiting and work.changes[-1].state.status in RELEASED:
        # Never released alone while an input waits for a person: both go together.
        work.changes.pop()
    if waiting:
        last = work.changes[-1]
        tests = ", ".join(sorted(waiting))
        hold = Hold(
            code=HoldCode.RULE,
            text=f"{WAITS_FOR} {tests}",
            key="waits_for",
            params={"tests": tests},
        )
        if hold not in last.state.holds:
            work.changes[-1] = replace(last, state=last.state.but(holds=(*last.state.holds, hold)))
    return _follow(ordered, work)


def _outcome_of(
    tube: Tube, pending: dict[int, _Pending], ids: dict[int, int], changed: bool, ordered_id: int
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
    tube: Tube,
    test: TestRule,
    measurement: Measurement,
    pending: dict[int, _Pending],
    facts: TubeFacts,
    rules: ActiveRules,
    *,
    author: str,
    now: datetime,
) -> Outcome | tuple[TubeTest, bool]:
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
                code="test_not_ordered",
                params={"code": test.code, "number": number},
            )
        )
    if ordered.status == TestStatus.CANCELLED:
        return _refused(
            Refusal(
                field="test_code",
                message=f"{test.code} on {number} was cancelled",
                kind="conflict",
                code="test_cancelled",
                params={"code": test.code, "number": number},
            )
        )
    measurement = judging.in_test_unit(test, measurement)  # converted, the original kept
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
            Refusal(
                field="value",
                message=f"{test.code} on {number} is cancelled",
                kind="conflict",
                code="test_cancelled",
                params={"code": test.code, "number": number},
            )
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
    if measurement.instrument == CALCULATOR:  # it follows its inputs; no one chooses for it
        differing = {(new.value_numeric, new.comparator, new.value_text)}
    # Two measurements that disagree: a person chooses the one to report.
    choose = Hold(
        code=HoldCode.RULE,
        text=f"measured {len(work.measured)} times with different values: choose the one to report",
        key="choose",
        params={"n": str(len(work.measured))},
    )
    earlier: StoredMeasurement | None = None  # one the rule set reports instead of the new
    if len(differing) > 1:
        reported = judging.rules_report(rules.autoverification, test.code, work.measured)
        if reported is None:
            state, release = state.but(holds=(*state.holds, choose)), False
        elif isinstance(reported, StoredMeasurement):
            earlier, release = reported, False
    if rules.shadow is not None:
        # What the version in shadow would have done: kept beside the result, acted on never.
        seen, would = judging.judged(
            new,
            test,
            facts,
            rules.shadow,
            flag_profile=measurement.flag_profile,
            indices=measurement.indices,
            measured_at=now,
        )
        holds = (*seen.holds, choose) if len(differing) > 1 else seen.holds
        work.shadow.append((len(work.changes), would and len(differing) == 1, holds))
    work.changes.append(
        Change(
            state=state,
            action="result.record",
            author=author,
            reason="" if taken.origin == MeasurementOrigin.FIRST else taken.origin.value,
            measurement=taken,
        )
    )
    if earlier is not None:  # the rule set reports an earlier measurement: a version says so
        by = autoverifier(state.ruleset_version)
        change, release = judging.chosen_by_rules(
            state, earlier, test, facts, rules.autoverification, by=by, seen=(measurement, now)
        )
        state = change.state
        work.changes.append(change)
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


def _refused(refusal: Refusal) -> Outcome:
    return Outcome(result_id=None, changed=False, status="", flags=(), refusal=refusal)
