"""One tube as the result path needs it: loaded once and locked, and the facts its judgement
reads (the patient, the previous results the delta checks need, the analyser's QC locks, the
tube's other values). `lab.results.recording` calls these in the recording transaction.

The tube is read as plain rows in one statement (the measured tube, its primary, the patient,
the primary's ordered tests and which of them have a result, those locked); only results
stored already are loaded as ORM objects, with their versions and measurements. What the
recording decides for the tube is written by `lab.results.writing` in one statement too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog.rules import TestRule
from lab.errors import LabError, NotFound
from lab.qc import service as qc
from lab.results.calculated import facts_of
from lab.results.judging import PatientFacts, Refusal, TubeFacts
from lab.results.writing import TestWrite
from lab.rules import PreviousResult, RuleSet
from lab.specimens import accession
from lab.specimens import service as specimens
from lab.tables import SPECIMEN_FINISHED, OrderedTest, Result, Specimen, TestStatus
from lab.tables.results import R
from lab.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class TubeRow:
    """What the result path reads of a tube (the one measured, or its primary)."""

    id: int
    accession_number: str
    order_id: int
    patient_id: int
    status: str
    urgency: int
    specimen_type: str
    container: str
    collected_at: datetime | None
    received_at: datetime | None


@dataclass(slots=True, kw_only=True)
class TubeTest:
    """One ordered test of the tube, locked: its status as stored and as decided now. A test
    the rules add to the tube (a calculated test) has no row yet: its id is negative until the
    writer inserts it with the tube's results (`added`: the rule that added it)."""

    id: int
    test_id: int
    status: str
    stored: str | None  # the status in the database; None for a test added now
    added: str = ""  # the rule that added it now
    due_at: datetime | None = None  # of a test added now

    @property
    def changed(self) -> bool:
        return self.stored is not None and self.status != self.stored


@dataclass(slots=True)
class Tube:
    """One tube as the result path needs it, loaded once and locked."""

    specimen: TubeRow  # the tube measured (an aliquot or the primary)
    root: TubeRow  # the primary tube, whose ordered tests the results belong to
    patient: PatientFacts
    ordered: dict[int, TubeTest]  # by test id, locked FOR UPDATE
    results: dict[int, Result]  # by ordered test id
    # The patient's previous result of each test asked for (a delta rule's), by test id.
    previous: dict[int, PreviousResult]
    order_number: str  # the order's filler number (the audit's name for it)
    # Audit rows of what the rules added to the tube, written with the results' rows.
    audit_rows: list[dict[str, Any]] = field(default_factory=list)

    def test_writes(self) -> list[TestWrite]:
        """The ordered tests whose status the results moved, and the tests the rules added
        (inserted with the results, with the status their result gives them)."""
        return [
            TestWrite(
                id=t.id,
                status=t.status,
                order_id=self.root.order_id,
                test_id=t.test_id,
                specimen_id=self.root.id,
                due_at=t.due_at,
                added_by_rule=t.added,
            )
            if t.stored is None
            else TestWrite(id=t.id, status=t.status)
            for t in self.ordered.values()
            if t.stored is None or t.changed
        ]

    def settle_orm_tests(self, session: Session) -> None:
        """The ORM's copies of the ordered tests take the statuses decided so far, before the
        orders service (a reflex test added) reads them the ORM's way; the tube's one
        statement writes the same values again."""
        changed = {t.id: t for t in self.ordered.values() if t.changed}
        if changed:
            for item in session.scalars(select(OrderedTest).where(OrderedTest.id.in_(changed))):
                item.status = changed[item.id].status

    def orm_root(self, session: Session) -> Specimen:
        """The primary tube as an ORM object, for the rarer paths that change it the ORM's way
        (a reflex test added, a receipt noted by the first result)."""
        root = session.get(Specimen, self.root.id)
        assert root is not None  # loaded in this transaction, locked tests on it
        return root


_TUBE_COLUMNS = (
    "id, accession_number, order_id, patient_id, status, urgency, specimen_type, container, "
    "collected_at, received_at"
)
# The tube, its primary (up the aliquots' parents), the patient, and the primary's ordered
# tests with the id of each one's result, the tests and the results locked: a verification
# committed meanwhile must not be written over, and two connections cannot record one test at
# once. (Only the tables' own names and columns are put into the text, never input.)
_LOAD = f"""
WITH RECURSIVE chain AS (
    SELECT s.id, s.parent_id, 0 AS depth FROM specimen s WHERE s.accession_number = %(number)s
    UNION ALL
    SELECT p.id, p.parent_id, c.depth + 1 FROM specimen p JOIN chain c ON p.id = c.parent_id
    WHERE c.depth < 32
),
root AS (SELECT id FROM chain ORDER BY depth DESC LIMIT 1),
tests AS (
    SELECT ot.id, ot.test_id, ot.status FROM ordered_test ot
    WHERE ot.specimen_id = (SELECT id FROM root) FOR UPDATE
),
stored AS (
    SELECT r.id, r.ordered_test_id FROM result r
    WHERE r.ordered_test_id IN (SELECT id FROM tests) FOR UPDATE
)
SELECT {", ".join(f"s.{c}" for c in _TUBE_COLUMNS.split(", "))},
       {", ".join(f"t.{c}" for c in _TUBE_COLUMNS.split(", "))},
       p.sex, p.birth_date, o.filler_order_number,
       (SELECT coalesce(json_agg(json_build_array(tests.id, tests.test_id, tests.status, stored.id)
                                 ORDER BY tests.id), '[]')
        FROM tests LEFT JOIN stored ON stored.ordered_test_id = tests.id),
       earlier.test_ids, earlier.vals, earlier.comparators, earlier.times
FROM specimen s
JOIN specimen t ON t.id = (SELECT id FROM root)
JOIN patient p ON p.id = s.patient_id
JOIN lab_order o ON o.id = t.order_id
CROSS JOIN LATERAL (
    -- The patient's newest earlier result of each test a delta rule compares with, measured
    -- before this message, not cancelled, not of this tube (ix_result_patient_history).
    SELECT array_agg(d.test_id) AS test_ids, array_agg(d.value_numeric) AS vals,
           array_agg(d.comparator) AS comparators, array_agg(d.at) AS times
    FROM (
        SELECT DISTINCT ON (r.test_id) r.test_id, r.value_numeric, r.comparator,
               coalesce(r.observed_at, r.recorded_at) AS at
        FROM result r
        WHERE r.patient_id = s.patient_id
          AND r.test_id = ANY(CAST(%(delta)s AS bigint[]))
          AND r.status <> '{R.CANCELLED.value}'
          AND r.value_numeric IS NOT NULL
          AND r.ordered_test_id NOT IN (SELECT id FROM tests)
          AND coalesce(r.observed_at, r.recorded_at) < CAST(%(before)s AS timestamptz)
        ORDER BY r.test_id, coalesce(r.observed_at, r.recorded_at) DESC, r.id DESC
    ) d
) earlier
WHERE s.accession_number = %(number)s
"""  # noqa: S608
_WIDTH = len(_TUBE_COLUMNS.split(", "))


def delta_tests(tests: Sequence[TestRule], rulesets: Sequence[RuleSet | None]) -> list[int]:
    """The tests that have a delta rule in any of `rulesets` (the active one and the one in
    shadow): their previous results are read with the tube."""
    return [
        t.id
        for t in tests
        if any(
            ruleset is not None and (rules := ruleset.for_test(t.code)) is not None and rules.delta
            for ruleset in rulesets
        )
    ]


def load_tube(
    session: Session,
    accession_number: str,
    *,
    delta: Sequence[int] = (),
    before: datetime | None = None,
) -> Tube | Refusal:
    """The tube, and the patient's previous result of each test in `delta` measured before
    `before` (now when not given)."""
    number = accession.normalise(accession_number)
    found = (
        session.connection()
        .exec_driver_sql(
            _LOAD, {"number": number, "delta": list(delta), "before": before or utcnow()}
        )
        .first()
    )
    if found is None:
        # A number that finds nothing is looked up again by `get_by_accession`, which says
        # why (empty, check digit, unknown).
        try:
            specimens.get_by_accession(session, accession_number)
        except LabError as error:
            return Refusal(
                field="accession_number",
                message=error.message,
                kind="not_found",
                code=error.code,
                params=error.params,
            )
        raise NotFound(f"the patient of {number} is missing")  # found but not joined
    columns = tuple(found)
    specimen = TubeRow(*columns[:_WIDTH])
    root = TubeRow(*columns[_WIDTH : 2 * _WIDTH])
    sex, born, order_number, tests, *earlier = columns[2 * _WIDTH :]
    if specimen.status in SPECIMEN_FINISHED:
        return Refusal(
            field="accession_number",
            message=f"{specimen.accession_number} is {specimen.status}; no results can be added",
            kind="conflict",
            code="specimen_closed",
            params={"number": specimen.accession_number, "status": specimen.status},
        )
    ordered = {
        test_id: TubeTest(id=test, test_id=test_id, status=status, stored=status)
        for test, test_id, status, _ in tests
    }
    with_result = [result_id for *_, result_id in tests if result_id is not None]
    stored: dict[int, Result] = {}
    if with_result:  # a rerun or a later measurement: the stored results, as the ORM has them
        stored = {
            r.ordered_test_id: r
            for r in session.scalars(select(Result).where(Result.id.in_(with_result)))
        }
    return Tube(
        specimen=specimen,
        root=root,
        patient=facts_of(sex=sex, birth_date=born, collected_at=root.collected_at),
        ordered=ordered,
        results=stored,
        previous={
            test_id: PreviousResult(value=value, comparator=comparator, measured_at=at)
            for test_id, value, comparator, at in zip(*earlier, strict=True)
        }
        if earlier[0] is not None
        else {},
        order_number=order_number,
    )


def tube_facts(
    session: Session, tube: Tube, tests: Sequence[TestRule], instruments: set[str]
) -> TubeFacts:
    """What the judgement needs beyond the results: the previous results the delta rules
    compare with (read with the tube), the QC locks of the analyser, the specimen's values."""
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
        patient=tube.patient, previous=tube.previous, specimen_results=values, qc_locked=locked
    )


def add_tests(actor: Actor, tube: Tube, tests: Sequence[tuple[TestRule, str]]) -> None:
    """Tests the rules add to the tube (calculated tests: `(test, rule)`), as
    `orders.add_by_rule` adds a test by rule but lean, since this runs with every creatinine
    or lipid tube: nothing is sent now. Each is put on the tube with a negative id, and the
    writer inserts it in the statement that writes the tube's results (with the status its
    result gives it); the due time from the tube's receipt; the audit rows go with the tube's
    other audit rows. The order needs no new status: an input was just measured on it, so it
    is active."""
    received = tube.root.received_at
    for test, rule in tests:
        added = TubeTest(
            id=-test.id,
            test_id=test.id,
            status=TestStatus.ORDERED.value,
            stored=None,
            added=rule[:120],
            due_at=received + timedelta(minutes=test.turnaround_minutes)
            if received and test.turnaround_minutes
            else None,
        )
        tube.ordered[test.id] = added
        tube.audit_rows.append(
            audit.row(
                actor=actor,
                action="order.add_test",
                entity_type="order",
                entity_id=tube.order_number,
                patient_id=tube.specimen.patient_id,
                after={
                    "test_id": test.id,
                    "specimen_id": tube.root.id,
                    "added_by_rule": added.added,
                },
                detail=added.added,
            )
        )
