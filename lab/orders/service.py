"""Orders: placed by the record (HL7) or in the lab, each test with its own status.

Placing an order also makes its specimens (one per container) with accession numbers, so the
labels can be printed the moment the order exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session, make_transient_to_detached

from lab import audit
from lab.audit import Actor
from lab.catalog import service as catalog
from lab.catalog.rules import TestRule
from lab.db import driver_sql
from lab.errors import Conflict, FieldProblem, InvalidInput, NotFound
from lab.patients import service as patients
from lab.specimens import service as specimens
from lab.tables import (
    ORDER_LIFECYCLE,
    SPECIMEN_FINISHED,
    TEST_CLOSED,
    TEST_LIFECYCLE,
    TEST_PENDING,
    Order,
    OrderedTest,
    OrderStatus,
    Patient,
    Priority,
    Specimen,
    SpecimenStatus,
    TestStatus,
    Withdrawal,
    WithdrawalKind,
)
from lab.timeutil import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRequest:
    code: str
    system: str = ""  # "" or "L": local code; "LN": LOINC


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    patient: patients.Demographics | None = None
    patient_id: int | None = None
    placer_order_number: str
    placer_namespace: str = ""
    tests: list[TestRequest] = field(default_factory=list)
    priority: str = Priority.ROUTINE
    ordering_clinician: str = ""
    ordering_location: str = ""
    clinical_info: str = ""
    collected_at: datetime | None = None
    source: str = "api"


def check_request(session: Session, request: OrderRequest) -> list[tuple[TestRule, str | None]]:
    """The order's own fields (not the patient): every problem at once, or its tests resolved
    from the catalog (panels expanded). The same check for the record's orders and the lab's."""
    problems: list[FieldProblem] = []
    placer = request.placer_order_number.strip()
    if not placer:
        problems.append(
            FieldProblem(
                "placer_order_number", "the placer order number is missing", "placer_missing"
            )
        )
    if request.priority not in {p.value for p in Priority}:
        problems.append(FieldProblem("priority", "use routine, urgent or stat", "priority_unknown"))
    if not request.tests:
        problems.append(FieldProblem("tests", "the order asks for no tests", "tests_missing"))
    resolved: list[tuple[TestRule, str | None]] = []
    for index, wanted in enumerate(request.tests):
        try:
            found, panel = catalog.expand(session, wanted.code, wanted.system)
        except NotFound as exc:
            problems.append(FieldProblem(f"tests[{index}].code", exc.message, exc.code, exc.params))
            continue
        resolved.extend((test, panel) for test in found)
    if problems:
        raise InvalidInput(
            problems[0].message,
            problems=problems,
            code=problems[0].code,
            params=problems[0].params,
        )
    return resolved


def place(session: Session, *, actor: Actor, request: OrderRequest) -> Order:
    """Register an order with its tests and specimens; a known placer number is a conflict.

    After the patient's, one statement writes it all (`_PLACE`): the order, its tubes
    (`specimens.plan_tubes`) with their events, its tests each on its tube, and its audit row.
    """
    resolved = check_request(session, request)
    placer = request.placer_order_number.strip()
    patient = _patient_for(session, actor=actor, request=request)
    tests: list[tuple[TestRule, str | None]] = []
    seen: set[int] = set()
    for test, panel in resolved:
        if test.id not in seen:  # a test named twice (alone and in a panel) is run once
            seen.add(test.id)
            tests.append((test, panel))
    plan = specimens.plan_tubes(
        [test for test, _ in tests], priority=request.priority, collected_at=request.collected_at
    )
    audit_row = audit.row(
        actor=actor,
        action="order.place",
        entity_type="order",
        entity_id="",  # the filler number, drawn by the statement
        patient_id=patient.id,
        after={
            "placer_order_number": placer,
            "tests": [test.code for test, _ in resolved],
            "specimens": [],  # the accession numbers, drawn by the statement
            "priority": request.priority,
        },
    )
    # Pending ORM rows (a known patient's update and its audit row) go first, so the audit
    # rows keep the order of the changes; Core statements do not flush the session.
    session.flush()
    # On the session's connection: a Core statement needs none of the ORM's handling.
    connection = session.connection()
    stored = connection.exec_driver_sql(
        _PLACE,
        {
            "placer_order_number": placer,
            "placer_namespace": request.placer_namespace.strip(),
            "patient_id": patient.id,
            "ordering_clinician": request.ordering_clinician,
            "ordering_location": request.ordering_location,
            "priority": request.priority,
            "clinical_info": request.clinical_info,
            "source": request.source,
            "status": OrderStatus.ACTIVE.value,
            "specimen_types": [kind[0] for kind in plan.kinds],
            "containers": [kind[1] for kind in plan.kinds],
            "urgency": plan.urgency,
            "specimen_status": plan.status,
            "collected_at": plan.collected_at,
            "actor": actor.username,
            "test_ids": [test.id for test, _ in tests],
            "test_specimen_types": [kind[0] for kind in plan.test_kinds],
            "test_containers": [kind[1] for kind in plan.test_kinds],
            "panel_codes": [panel for _, panel in tests],
            "test_status": TestStatus.ORDERED.value,
            "requested_at": plan.requested_at,
            "due_at": plan.due_at,
            **{
                f"audit_{name}": json.dumps(value) if name in ("before", "after") else value
                for name, value in audit_row.items()
                if name not in ("entity_id", "patient_id")
            },
        },
    ).one_or_none()
    if stored is None:
        existing = find_by_placer(session, placer, request.placer_namespace)
        filler = existing.filler_order_number if existing is not None else "?"
        raise Conflict(
            f"order {placer} exists already as {filler}",
            code="order_exists",
            params={"placer": placer, "filler": filler},
        )
    order = Order(**stored._mapping)
    make_transient_to_detached(order)
    session.add(order)  # persistent: its tests load when first read, as for any stored order
    return order


def _patient_for(session: Session, *, actor: Actor, request: OrderRequest) -> Patient:
    if request.patient is not None:
        return patients.upsert(session, actor=actor, data=request.patient)
    if request.patient_id is not None:
        patient = session.get(Patient, request.patient_id)
        if patient is None:
            raise InvalidInput.field(
                "patient_id",
                f"no patient {request.patient_id}",
                code="patient_unknown",
                params={"id": request.patient_id},
            )
        return patients.surviving(session, patient)
    raise InvalidInput.field(
        "patient", "name the patient (identifiers) or give patient_id", code="patient_missing"
    )


#: The next filler order number, LAB and the sequence's number in at least nine digits
#: (LAB000000042), drawn by the INSERT that stores the order.
_NEXT_FILLER_NUMBER = (
    "(SELECT 'LAB' || lpad(n::text, greatest(9, length(n::text)), '0') "
    "FROM nextval('filler_order_seq') AS n)"
)
_ORDER_COLUMNS = ", ".join(column.name for column in Order.__table__.columns)
# A new order in one statement: the order (no row when its placer number is known: the unique
# key decides, so two connections placing the same order at once cannot both succeed), its
# tubes numbered by the database, their "created" events, its tests each on the tube of its
# kind, and its audit row with the filler and accession numbers. Rows go in the order of the
# arrays (ORDER BY place), so their ids ascend as when they were written one by one.
_PLACE = driver_sql(
    text(
        f"""
    WITH placed AS (
        INSERT INTO lab_order (placer_order_number, placer_namespace, filler_order_number,
            patient_id, ordering_clinician, ordering_location, priority, clinical_info, source,
            status)
        VALUES (:placer_order_number, :placer_namespace, {_NEXT_FILLER_NUMBER}, :patient_id,
            :ordering_clinician, :ordering_location, :priority, :clinical_info, :source,
            :status)
        ON CONFLICT (placer_namespace, placer_order_number) DO NOTHING
        RETURNING {_ORDER_COLUMNS}
    ), tube AS (
        INSERT INTO specimen (accession_number, order_id, patient_id, specimen_type, container,
            urgency, status, collected_at, rejection_comment)
        SELECT {specimens.NEXT_ACCESSION_NUMBER}, placed.id, placed.patient_id,
            u.specimen_type, u.container, CAST(:urgency AS SMALLINT),
            CAST(:specimen_status AS VARCHAR), CAST(:collected_at AS TIMESTAMPTZ), ''
        FROM placed, unnest(CAST(:specimen_types AS VARCHAR[]),
            CAST(:containers AS VARCHAR[])) WITH ORDINALITY AS u(specimen_type, container, place)
        ORDER BY u.place
        RETURNING id, accession_number, specimen_type, container
    ), event AS (
        INSERT INTO specimen_event (specimen_id, event, actor, detail)
        SELECT tube.id, 'created', CAST(:actor AS VARCHAR),
            'for order ' || placed.filler_order_number
        FROM placed, tube ORDER BY tube.id
    ), test AS (
        INSERT INTO ordered_test (order_id, test_id, specimen_id, panel_code, status, add_on,
            requested_at, due_at, cancel_reason)
        SELECT placed.id, u.test_id, tube.id, u.panel_code, CAST(:test_status AS VARCHAR),
            false, CAST(:requested_at AS TIMESTAMPTZ), u.due_at, ''
        FROM placed, unnest(CAST(:test_ids AS BIGINT[]), CAST(:test_specimen_types AS VARCHAR[]),
            CAST(:test_containers AS VARCHAR[]), CAST(:panel_codes AS VARCHAR[]),
            CAST(:due_at AS TIMESTAMPTZ[]))
            WITH ORDINALITY AS u(test_id, specimen_type, container, panel_code, due_at, place)
        JOIN tube ON tube.specimen_type = u.specimen_type AND tube.container = u.container
        ORDER BY u.place
    ), audited AS (
        INSERT INTO audit_event (actor_user_id, actor_name, channel, action, entity_type,
            entity_id, patient_id, before, after, detail, via)
        SELECT CAST(:audit_actor_user_id AS BIGINT), CAST(:audit_actor_name AS VARCHAR),
            CAST(:audit_channel AS VARCHAR), CAST(:audit_action AS VARCHAR),
            CAST(:audit_entity_type AS VARCHAR), placed.filler_order_number, placed.patient_id,
            CAST(:audit_before AS JSONB),
            jsonb_set(CAST(:audit_after AS JSONB), '{{specimens}}',
                coalesce((SELECT jsonb_agg(accession_number ORDER BY id) FROM tube), '[]')),
            CAST(:audit_detail AS TEXT), CAST(:audit_via AS VARCHAR)
        FROM placed
    )
    SELECT placed.* FROM placed
    """  # noqa: S608 - the table's own column names, never input
    )
)


def find_by_placer(session: Session, placer: str, namespace: str = "") -> Order | None:
    return session.scalar(
        select(Order).where(
            Order.placer_order_number == placer.strip(),
            Order.placer_namespace == namespace.strip(),
        )
    )


def get_by_filler(session: Session, filler: str) -> Order:
    order = session.scalar(select(Order).where(Order.filler_order_number == filler.strip()))
    if order is None:
        raise NotFound(f"no order {filler}", code="order_unknown", params={"filler": filler})
    return order


def read(session: Session, filler: str, *, actor: Actor) -> Order:
    order = get_by_filler(session, filler)
    audit.record_read(
        session, actor=actor, patient_id=order.patient_id, what="order", entity_id=filler
    )
    return order


def search_by_placer(session: Session, placer: str, *, actor: Actor) -> list[Order]:
    orders = list(
        session.scalars(
            select(Order).where(Order.placer_order_number == placer.strip()).order_by(Order.id)
        )
    )
    for order in orders:
        audit.record_read(
            session,
            actor=actor,
            patient_id=order.patient_id,
            what="order",
            entity_id=order.filler_order_number,
        )
    return orders


def specimens_of(session: Session, order: Order) -> list[Specimen]:
    return specimens.tubes_of_order(session, order.id)


def add_test(
    session: Session, *, actor: Actor, filler: str, code: str, system: str = ""
) -> OrderedTest:
    """An add-on test: run on a specimen already in the lab when one fits, else a new tube."""
    order = get_by_filler(session, filler)
    if order.status == OrderStatus.CANCELLED:
        raise Conflict(
            f"order {filler} is cancelled", code="order_cancelled", params={"filler": filler}
        )
    test = catalog.resolve_test(session, code=code, system=system)
    if any(t.test_id == test.id and t.status != TestStatus.CANCELLED for t in order.tests):
        raise Conflict(
            f"{test.code} is already ordered on {filler}",
            code="test_already_ordered",
            params={"code": test.code, "filler": filler},
        )
    item = OrderedTest(test_id=test.id, status=TestStatus.ORDERED, add_on=True)
    order.tests.append(item)
    order.status = ORDER_LIFECYCLE.check(order.status, OrderStatus.ACTIVE, name=f"order {filler}")
    session.flush()
    usable = [
        s
        for s in specimens_of(session, order)
        if s.container == test.container
        and s.specimen_type == test.specimen_type
        and s.parent_id is None
        and s.status not in SPECIMEN_FINISHED
    ]
    if usable:
        item.specimen_id = usable[0].id
        specimens.set_due_times(session, usable[0])
        if usable[0].status == SpecimenStatus.COMPLETED:
            specimens.note_result(session, actor=actor, specimen=usable[0])
    else:
        specimens.create_for_tests(session, actor=actor, order=order, tests=[item])
    audit.record(
        session,
        actor=actor,
        action="order.add_test",
        entity_type="order",
        entity_id=filler,
        patient_id=order.patient_id,
        after={"test": test.code, "specimen_id": item.specimen_id},
    )
    return item


def add_by_rule(
    session: Session, *, actor: Actor, specimen: Specimen, test_id: int, rule: str
) -> OrderedTest:
    """A test the lab adds to a tube by rule (a calculated test, a reflex): on the same tube, so
    the patient is not bled twice; it shows in the worklist and the analyser's host query."""
    order = session.get(Order, specimen.order_id)
    if order is None:  # pragma: no cover - foreign key
        raise NotFound(f"{specimen.accession_number} has no order")
    item = OrderedTest(
        test_id=test_id,
        specimen_id=specimen.id,
        status=TestStatus.ORDERED,
        add_on=True,
        added_by_rule=rule[:120],
    )
    order.tests.append(item)
    if order.status != "cancelled":
        order.status = "active"
    session.flush()
    specimens.set_due_times(session, specimen)
    audit.record(
        session,
        actor=actor,
        action="order.add_test",
        entity_type="order",
        entity_id=order.filler_order_number,
        patient_id=order.patient_id,
        after={"test_id": test_id, "specimen_id": specimen.id, "added_by_rule": item.added_by_rule},
        detail=item.added_by_rule,
    )
    return item


def cancel_tests(
    session: Session,
    *,
    actor: Actor,
    filler: str,
    codes: list[str] | None,
    reason: str,
    tell_record: bool = True,
) -> list[OrderedTest]:
    """Cancel named tests (or all) that have no result yet; resulted ones are refused.

    The record learns it (an ORU with OBR-25 `X` and the reason, `lab.hl7.release`) from the
    withdrawal written here in the same transaction, unless the record itself asked for the
    cancellation (`tell_record=False`): nothing the record ordered ends without a word to it.
    """
    order = get_by_filler(session, filler)
    if not reason.strip():
        raise InvalidInput.field(
            "reason", "say why the tests are cancelled", code="cancel_reason_missing"
        )
    wanted = {c.strip().upper() for c in codes} if codes else None
    chosen = [t for t in order.tests if wanted is None or t.test.code in wanted]
    if wanted is not None:
        missing = wanted - {t.test.code for t in chosen}
        if missing:
            raise NotFound(
                f"{', '.join(sorted(missing))} not ordered on {filler}",
                code="tests_not_ordered",
                params={"codes": ", ".join(sorted(missing)), "filler": filler},
            )
    done = [t.test.code for t in chosen if t.status not in TEST_PENDING | {TestStatus.CANCELLED}]
    if done:
        raise Conflict(
            f"{', '.join(done)} already has a result; cancel or correct the result instead",
            code="tests_have_results",
            params={"codes": ", ".join(done)},
        )
    cancelled = [t for t in chosen if t.status != TestStatus.CANCELLED]
    for item in cancelled:
        item.status = TEST_LIFECYCLE.check(item.status, TestStatus.CANCELLED)
        item.cancelled_at = utcnow()
        item.cancel_reason = reason
    refresh_status(order)
    if cancelled and tell_record:
        session.add(
            Withdrawal(
                order_id=order.id,
                ordered_test_ids=[item.id for item in cancelled],
                kind=WithdrawalKind.CANCELLED,
                reason_code="",
                reason=reason.strip(),
            )
        )
    audit.record(
        session,
        actor=actor,
        action="order.cancel_tests",
        entity_type="order",
        entity_id=filler,
        patient_id=order.patient_id,
        after={"cancelled": [t.test.code for t in cancelled]},
        detail=reason,
    )
    return cancelled


def for_patient(session: Session, patient_id: int, *, limit: int = 20) -> list[Order]:
    """A patient's newest orders. The caller has audited how it found the patient."""
    query = (
        select(Order)
        .where(Order.patient_id == patient_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def refresh_status(order: Order) -> None:
    """active while anything is open; completed when every test is verified or cancelled."""
    statuses = {t.status for t in order.tests}
    if statuses and statuses <= {TestStatus.CANCELLED}:
        target = OrderStatus.CANCELLED
    elif statuses <= TEST_CLOSED:
        target = OrderStatus.COMPLETED
    else:
        target = OrderStatus.ACTIVE
    order.status = ORDER_LIFECYCLE.check(
        order.status, target, name=f"order {order.filler_order_number}"
    )
