"""Specimens: one per container, accession numbers, the lifecycle and its timeline.

Every status change goes through `_move`, which checks the transition table below; a move
that is not in the table is refused with a clear error, never carried out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog.rules import TestRule, rule_by_id
from lab.errors import Conflict, InvalidInput, NotFound
from lab.specimens import accession
from lab.tables import (
    SPECIMEN_FINISHED,
    SPECIMEN_LIFECYCLE,
    TEST_PENDING,
    Order,
    OrderedTest,
    Specimen,
    SpecimenEvent,
    SpecimenStatus,
    Withdrawal,
    WithdrawalKind,
)
from lab.timeutil import as_utc, oslo_text, utcnow

S = SpecimenStatus

# The lab's specimen reject reasons. The codes are the lab's own: some look like HL7 table 0490
# codes but mean something else (the lab's RA is a wrong container, 0490's RA a missing patient
# ID), so what the record is sent in SPM-21 is mapped by meaning in lab.results.outbound.
REJECT_REASONS: dict[str, str] = {
    "RH": "haemolysed",
    "RC": "clotted",
    "QS": "insufficient volume",
    "RA": "wrong container or additive",
    "RM": "unlabelled or mislabelled",
    "RI": "identification problem",
    "RB": "broken or leaking container",
    "EX": "too old (transport time exceeded)",
    "RR": "improper storage",
    "RN": "contaminated",
    "RD": "collection time missing",
}


def create_for_tests(
    session: Session,
    *,
    actor: Actor,
    order: Order,
    tests: Sequence[OrderedTest],
    collected_at: datetime | None = None,
) -> list[Specimen]:
    """Give every ordered test a specimen: one per container type the tests need.

    The tubes are made first and written together, so new ordered tests are inserted with
    their specimen already set. (A new order's tubes: `plan_tubes`.)
    """
    kinds: dict[tuple[str, str], list[OrderedTest]] = {}
    for ordered in tests:
        test = rule_by_id(session, ordered.test_id)
        kinds.setdefault(tube_kind(test), []).append(ordered)
    numbers = next_accession_numbers(session, len(kinds))
    made = [
        Specimen(
            accession_number=number,
            order_id=order.id,
            patient_id=order.patient_id,
            specimen_type=specimen_type,
            container=container,
            urgency=URGENCY.get(order.priority, ROUTINE_URGENCY),
            status=S.COLLECTED if collected_at else S.EXPECTED,
            collected_at=as_utc(collected_at) if collected_at else None,
        )
        for number, (specimen_type, container) in zip(numbers, kinds, strict=True)
    ]
    session.add_all(made)
    session.flush()
    now = utcnow()
    for specimen, ordered_tests in zip(made, kinds.values(), strict=True):
        _event(session, specimen, actor, "created", f"for order {order.filler_order_number}")
        for ordered in ordered_tests:
            ordered.specimen_id = specimen.id
            # Due from the order time until the tube is received (see `set_due_times`).
            ordered.requested_at = ordered.requested_at or now
            minutes = rule_by_id(session, ordered.test_id).turnaround_minutes
            if minutes and ordered.due_at is None and ordered.status in TEST_PENDING:
                ordered.due_at = as_utc(ordered.requested_at) + timedelta(minutes=minutes)
    session.add_all(tests)
    return made


def tube_kind(test: TestRule) -> tuple[str, str]:
    """The tube a test is run on: (specimen type, container); one tube per kind and order."""
    return test.specimen_type, test.container


def accession_numbers(sequences: Sequence[int]) -> list[str]:
    """Accession numbers for values drawn from the accession sequence."""
    year = utcnow().year
    return [accession.make(year, int(sequence)) for sequence in sequences]


#: SQL of the accession number for the next value of the accession sequence, made by the
#: database (migration 0024, the same number as `accession.make`): a new order's INSERT
#: numbers its tubes itself.
NEXT_ACCESSION_NUMBER = (
    "accession_number(CAST(extract(year FROM now() AT TIME ZONE 'UTC') AS INTEGER), "
    "nextval('accession_seq'))"
)


@dataclass(frozen=True, slots=True)
class TubePlan:
    """A new order's tubes and where its tests go, as the columns of their rows."""

    kinds: list[tuple[str, str]]
    """(specimen type, container) of each tube, in the order the tests first need them."""
    urgency: int
    status: str
    collected_at: datetime | None
    test_kinds: list[tuple[str, str]]
    """The tube kind of each test, in the order of the tests."""
    requested_at: datetime
    due_at: list[datetime | None]


def plan_tubes(
    tests: Sequence[TestRule], *, priority: str, collected_at: datetime | None
) -> TubePlan:
    """The tubes of a new order of `tests`: one per `tube_kind`, expected (or collected, with
    the collection time) and as urgent as the order; the tests are due from now by their
    turnaround targets until the tube is received (see `set_due_times`)."""
    now = utcnow()
    return TubePlan(
        kinds=list(dict.fromkeys(tube_kind(test) for test in tests)),
        urgency=URGENCY.get(priority, ROUTINE_URGENCY),
        status=(S.COLLECTED if collected_at else S.EXPECTED).value,
        collected_at=as_utc(collected_at) if collected_at else None,
        test_kinds=[tube_kind(test) for test in tests],
        requested_at=now,
        due_at=[
            now + timedelta(minutes=test.turnaround_minutes) if test.turnaround_minutes else None
            for test in tests
        ],
    )


def next_accession_numbers(session: Session, count: int) -> list[str]:
    sequences = session.scalars(
        text("SELECT nextval('accession_seq') FROM generate_series(1, :count)"),
        {"count": count},
    ).all()
    return accession_numbers(sequences)


def next_accession_number(session: Session) -> str:
    return next_accession_numbers(session, 1)[0]


def get_by_accession(session: Session, number: str) -> Specimen:
    """The specimen with this accession number; a mistyped number is caught by its check digit."""
    value = accession.normalise(number)
    if not value:
        raise InvalidInput.field(
            "accession_number", "scan or type an accession number", code="accession_empty"
        )
    specimen = session.scalar(select(Specimen).where(Specimen.accession_number == value))
    if specimen is not None:
        return specimen
    if not accession.is_valid(value):
        raise InvalidInput.field(
            "accession_number",
            f"{value} is not a valid accession number (check digit)",
            code="accession_check_digit",
            params={"number": value},
        )
    raise NotFound(
        f"no specimen with accession number {value}",
        code="specimen_unknown",
        params={"number": value},
    )


def read(session: Session, number: str, *, actor: Actor) -> Specimen:
    specimen = get_by_accession(session, number)
    audit.record_read(
        session,
        actor=actor,
        patient_id=specimen.patient_id,
        what="specimen",
        entity_id=specimen.accession_number,
    )
    return specimen


def collect(session: Session, *, actor: Actor, number: str, at: datetime | None) -> Specimen:
    specimen = get_by_accession(session, number)
    specimen.collected_at = as_utc(at) if at else utcnow()
    _move(session, specimen, S.COLLECTED, actor, f"collected {oslo_text(specimen.collected_at)}")
    return specimen


def receive(session: Session, *, actor: Actor, number: str) -> Specimen:
    """Mark the specimen received in the lab (the scan at the reception bench)."""
    specimen = get_by_accession(session, number)
    if specimen.status in (S.RECEIVED, S.IN_PROGRESS, S.COMPLETED):
        raise Conflict(
            f"{specimen.accession_number} was received already, {oslo_text(specimen.received_at)}",
            code="specimen_already_received",
            params={"number": specimen.accession_number, "at": specimen.received_at},
        )
    specimen.received_at = utcnow()
    _move(session, specimen, S.RECEIVED, actor, "received in the lab")
    set_due_times(session, specimen)
    return specimen


def reject(
    session: Session, *, actor: Actor, number: str, reason: str, comment: str = ""
) -> Specimen:
    if reason not in REJECT_REASONS:
        raise InvalidInput.field(
            "reason",
            f"unknown reason {reason!r}; use one of {', '.join(REJECT_REASONS)}",
            code="reject_reason_unknown",
        )
    specimen = get_by_accession(session, number)
    specimen.rejection_reason = reason
    specimen.rejection_comment = comment
    detail = REJECT_REASONS[reason] + (f": {comment}" if comment else "")
    _move(session, specimen, S.REJECTED, actor, detail)
    if specimen.parent_id is None:
        # The tube's tests that were still waiting now wait for a new specimen: the record
        # is told (ORU, OBR-25 X, SPM-21) from this row, in this transaction. An aliquot's
        # rejection leaves its primary tube, and so the tests, as they are.
        waiting = [t for t in tests_of(session, specimen) if t.status in TEST_PENDING]
        if waiting:
            session.add(
                Withdrawal(
                    order_id=specimen.order_id,
                    specimen_id=specimen.id,
                    ordered_test_ids=[t.id for t in waiting],
                    kind=WithdrawalKind.REJECTED,
                    reason_code=reason,
                    reason=detail,
                )
            )
    return specimen


def dispose(session: Session, *, actor: Actor, number: str) -> Specimen:
    specimen = get_by_accession(session, number)
    _move(session, specimen, S.DISPOSED, actor, "disposed")
    return specimen


def make_aliquot(session: Session, *, actor: Actor, number: str, container: str = "") -> Specimen:
    """A portion poured off into a new tube; it keeps the parent's order and tests."""
    parent = get_by_accession(session, number)
    if parent.status not in (S.RECEIVED, S.IN_PROGRESS, S.COMPLETED):
        raise Conflict(
            f"{parent.accession_number} must be received before it is aliquoted",
            code="aliquot_not_received",
            params={"number": parent.accession_number},
        )
    child = Specimen(
        accession_number=next_accession_number(session),
        order_id=parent.order_id,
        patient_id=parent.patient_id,
        parent_id=parent.id,
        specimen_type=parent.specimen_type,
        container=container or parent.container,
        urgency=parent.urgency,
        status=S.RECEIVED,
        collected_at=parent.collected_at,
        received_at=utcnow(),
    )
    session.add(child)
    session.flush()
    _event(session, child, actor, "created", f"aliquot of {parent.accession_number}")
    _event(session, parent, actor, "aliquoted", f"aliquot {child.accession_number}")
    return child


def tubes_of_order(session: Session, order_id: int) -> list[Specimen]:
    return list(
        session.scalars(select(Specimen).where(Specimen.order_id == order_id).order_by(Specimen.id))
    )


def root_of(session: Session, specimen: Specimen) -> Specimen:
    """The primary tube of an aliquot (results are stored against the primary's tests)."""
    while specimen.parent_id is not None:
        parent = session.get(Specimen, specimen.parent_id)
        if parent is None:
            break
        specimen = parent
    return specimen


def tests_of(session: Session, specimen: Specimen) -> list[OrderedTest]:
    root = root_of(session, specimen)
    return list(
        session.scalars(
            select(OrderedTest).where(OrderedTest.specimen_id == root.id).order_by(OrderedTest.id)
        )
    )


def pending_tests(session: Session, specimen: Specimen) -> list[OrderedTest]:
    """Tests still to be run on this specimen (what a host query is answered with)."""
    if specimen.status in SPECIMEN_FINISHED:
        return []
    return [t for t in tests_of(session, specimen) if t.status in TEST_PENDING]


# The order's priority as a number the work lists sort by (see Specimen.urgency).
URGENCY = {"stat": 0, "urgent": 1, "routine": 2}
ROUTINE_URGENCY = 2


def set_due_times(session: Session, specimen: Specimen) -> None:
    """Give the tube's open tests the time their result is due: the test's turnaround target
    from receipt of the tube; until it is received, from the time the test was ordered, so a
    tube never received (or never collected) is on the overdue list like any late test. The
    receipt replaces a due time counted from the order; a time set otherwise stays."""
    for ordered in tests_of(session, specimen):
        minutes = rule_by_id(session, ordered.test_id).turnaround_minutes
        if not minutes or ordered.status not in TEST_PENDING:
            continue
        span = timedelta(minutes=minutes)
        from_order = as_utc(ordered.requested_at or utcnow()) + span
        if specimen.received_at is None:
            if ordered.due_at is None:
                ordered.due_at = from_order
        elif ordered.due_at is None or as_utc(ordered.due_at) == from_order:
            ordered.due_at = as_utc(specimen.received_at) + span


@dataclass(frozen=True, slots=True, kw_only=True)
class TubeMove:
    """A tube's move that the results service writes in the statement of its results: the new
    status, the line of the timeline (`event`, `detail`) and the audit row."""

    specimen_id: int
    status: str
    event: str
    detail: str
    audit: dict[str, Any]


def move_on_result(
    *,
    actor: Actor,
    specimen_id: int,
    accession_number: str,
    patient_id: int,
    status: str,
    open_tests: int,
) -> TubeMove | None:
    """What a result does to a tube already in the lab, as `note_result` decides it: at work,
    or completed when none of its tests waits for a result; None when it stays as it is. (A
    tube not yet received goes through `note_result`, which notes the receipt.)"""
    current = SpecimenStatus(status)
    target = _after_result(current, open_tests)
    if target is None:
        return None
    return TubeMove(
        specimen_id=specimen_id,
        status=target.value,
        event=target.value,
        detail="",
        audit=audit.row(
            actor=actor,
            action=f"specimen.{target.value}",
            entity_type="specimen",
            entity_id=accession_number,
            patient_id=patient_id,
            before={"status": current.value},
            after={"status": target.value},
        ),
    )


def note_result(
    session: Session, *, actor: Actor, specimen: Specimen, open_tests: int | None = None
) -> None:
    """Called by the results service: a result arrived, so the specimen is at work or done.

    `open_tests` is the number of the tube's tests still without a result, when the caller
    knows it; otherwise it is counted here.
    """
    root = root_of(session, specimen)
    if open_tests is None:
        open_tests = session.scalar(
            select(func.count())
            .select_from(OrderedTest)
            .where(
                OrderedTest.specimen_id == root.id,
                OrderedTest.status.in_(TEST_PENDING),
            )
        )
    if root.status in (S.EXPECTED, S.COLLECTED):
        # An analyser can only measure a tube that is in the lab: note the implicit receipt.
        root.received_at = root.received_at or utcnow()
        _move(session, root, S.RECEIVED, actor, "received (first result arrived)")
        set_due_times(session, root)
    target = _after_result(SpecimenStatus(root.status), open_tests or 0)  # count() is never NULL
    if target is not None:
        _move(session, root, target, actor, "")


def _after_result(current: SpecimenStatus, open_tests: int) -> SpecimenStatus | None:
    """Where a result moves a tube in the lab: completed when none of its tests waits for a
    result, at work otherwise; None when it stays where it is."""
    target = S.COMPLETED if open_tests == 0 else S.IN_PROGRESS
    if current == target or not SPECIMEN_LIFECYCLE.allows(current, target):
        return None
    return target


def _move(
    session: Session, specimen: Specimen, target: SpecimenStatus, actor: Actor, detail: str
) -> None:
    current = SpecimenStatus(specimen.status)
    specimen.status = SPECIMEN_LIFECYCLE.check(current, target, name=specimen.accession_number)
    _event(session, specimen, actor, target.value, detail)
    audit.record(
        session,
        actor=actor,
        action=f"specimen.{target.value}",
        entity_type="specimen",
        entity_id=specimen.accession_number,
        patient_id=specimen.patient_id,
        before={"status": current.value},
        after={"status": target.value},
        detail=detail,
    )


def _event(session: Session, specimen: Specimen, actor: Actor, event: str, detail: str) -> None:
    session.add(
        SpecimenEvent(specimen_id=specimen.id, event=event, actor=actor.username, detail=detail)
    )
    if "events" in specimen.__dict__:  # a timeline already read in this session is out of date
        session.expire(specimen, ["events"])
