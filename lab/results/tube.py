"""One tube as the result path needs it: loaded once and locked, and the facts its judgement
reads (the patient, the previous results the delta checks need, the analyser's QC locks, the
tube's other values). `lab.results.recording` calls these in the recording transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnClause, func, insert, literal_column, select
from sqlalchemy.orm import Session, make_transient_to_detached

from lab import audit
from lab.audit import Actor
from lab.catalog.rules import TestRule
from lab.errors import LabError, NotFound
from lab.qc import service as qc
from lab.results.calculated import patient_facts
from lab.results.judging import PatientFacts, Refusal, TubeFacts
from lab.rules import PreviousResult, RuleSet
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import SPECIMEN_FINISHED, OrderedTest, Patient, Result, Specimen, TestStatus
from lab.tables.results import R


@dataclass(slots=True)
class Tube:
    """One tube as the result path needs it, loaded once and locked."""

    specimen: Specimen  # the tube measured (an aliquot or the primary)
    root: Specimen  # the primary tube, whose ordered tests the results belong to
    patient: PatientFacts
    ordered: dict[int, OrderedTest]  # by test id, locked FOR UPDATE
    results: dict[int, Result]  # by ordered test id
    # Audit rows of what the rules added to the tube, written with the results' rows.
    audit_rows: list[dict[str, Any]] = field(default_factory=list)


def load_tube(session: Session, accession_number: str) -> Tube | Refusal:
    # The tube with its patient in one statement; a number that finds nothing is looked up
    # again by `get_by_accession`, which says why (empty, check digit, unknown).
    found = session.execute(
        select(Specimen, Patient)
        .join(Patient, Patient.id == Specimen.patient_id)
        .where(Specimen.accession_number == accession.normalise(accession_number))
    ).first()
    patient: Patient | None
    if found is not None:
        specimen, patient = found._tuple()
    else:
        try:
            specimen = specimens.get_by_accession(session, accession_number)
        except LabError as error:
            return Refusal(
                field="accession_number",
                message=error.message,
                kind="not_found",
                code=error.code,
                params=error.params,
            )
        patient = None
    if specimen.status in SPECIMEN_FINISHED:
        return Refusal(
            field="accession_number",
            message=f"{specimen.accession_number} is {specimen.status}; no results can be added",
            kind="conflict",
            code="specimen_closed",
            params={"number": specimen.accession_number, "status": specimen.status},
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
    patient = patient or session.get(Patient, specimen.patient_id)
    if patient is None:
        raise NotFound(f"the patient of {specimen.accession_number} is missing")
    return Tube(
        specimen=specimen,
        root=root,
        patient=patient_facts(patient, root),
        ordered=ordered,
        results=stored,
    )


def tube_facts(
    session: Session,
    tube: Tube,
    tests: Sequence[TestRule],
    rulesets: Sequence[RuleSet | None],
    measured_at: datetime,
    instruments: set[str],
) -> TubeFacts:
    """What the judgement needs beyond the results: the previous result of each test that has a
    delta rule in any of `rulesets` (the active one and the one in shadow; one query for the
    tube), the QC locks of the analyser, the specimen's values."""
    previous: dict[int, PreviousResult] = {}
    with_delta = [
        t.id
        for t in tests
        if any(
            ruleset is not None and (rules := ruleset.for_test(t.code)) is not None and rules.delta
            for ruleset in rulesets
        )
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
    # A test QC has locked on the analyser that measured it is held (`qc`); one query per
    # analyser of the message (a keyboard entry is never locked by an analyser's QC).
    locked: frozenset[str] = frozenset()
    for instrument in instruments:
        locked |= qc.locked_tests(session, instrument=instrument, test_codes=list(codes.values()))
    return TubeFacts(
        patient=tube.patient, previous=previous, specimen_results=values, qc_locked=locked
    )


def add_tests(
    session: Session, actor: Actor, tube: Tube, tests: Sequence[tuple[TestRule, str]]
) -> None:
    """Tests the rules add to the tube (calculated tests: `(test, rule)`), as
    `orders.add_by_rule` adds a test by rule but lean, since this runs with every creatinine
    or lipid tube: one INSERT for all of them, which returns the new ids and the order's number
    for the audit rows; the due time from the tube's receipt; the audit rows go with the tube's
    other audit rows in one INSERT. The order needs no new status: an input was just measured
    on it, so it is active."""
    if not tests:
        return
    received = tube.root.received_at
    rows = [
        {
            "order_id": tube.root.order_id,
            "test_id": test.id,
            "specimen_id": tube.root.id,
            "panel_code": None,
            "status": TestStatus.ORDERED.value,
            "add_on": True,
            "due_at": received + timedelta(minutes=test.turnaround_minutes)
            if received and test.turnaround_minutes
            else None,
            "cancelled_at": None,
            "cancel_reason": "",
            "added_by_rule": rule[:120],
        }
        for test, rule in tests
    ]
    number: ColumnClause[str] = literal_column(
        "(SELECT o.filler_order_number FROM lab_order o WHERE o.id = ordered_test.order_id)"
    )
    with session.no_autoflush:  # the tube's status changes go in the one flush at the end
        returned = session.execute(
            insert(OrderedTest)
            .values(rows)
            .returning(OrderedTest.id, OrderedTest.test_id, OrderedTest.requested_at, number)
        ).all()
    by_test = {row.test_id: row for row in returned}
    for columns in rows:
        new_id, _, requested_at, order_number = by_test[columns["test_id"]]
        item = OrderedTest(id=new_id, requested_at=requested_at, **columns)
        make_transient_to_detached(item)
        session.add(item)  # persistent, as stored: later status changes are flushed as UPDATEs
        tube.ordered[item.test_id] = item
        tube.audit_rows.append(
            audit.row(
                actor=actor,
                action="order.add_test",
                entity_type="order",
                entity_id=order_number,
                patient_id=tube.specimen.patient_id,
                after={
                    "test_id": item.test_id,
                    "specimen_id": tube.root.id,
                    "added_by_rule": columns["added_by_rule"],
                },
                detail=str(columns["added_by_rule"]),
            )
        )
