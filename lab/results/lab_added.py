"""Tests the lab adds by rule (reflexes), told to the record as orders it learns of.

A reflex rule adds a test the record did not order. The record must learn of it before the
result exists: the added test is on the order, a result will come, and when the tube cannot serve
the test (it needs another specimen type or container) a new specimen must be taken from the
patient. Each is told at once, in the recording transaction, as an ORU^R01 through the outbox:

- added to the same tube: OBR-4 the added test, OBR-11 `G` ("generated order; reflex order",
  HL7 table 0065), OBR-25 `I` ("no results available; specimen received, procedure
  incomplete", table 0123), a note with the rule;
- a new specimen is needed: OBR-11 `L` ("lab to obtain specimen from patient", table 0065),
  OBR-25 `O` ("order received; specimen not yet received", table 0123), a note naming the
  specimen the test needs; the new tube is made (expected, with its accession number), so it is
  on the receipt list and its label can be printed.

The result itself goes to the record later in the order's ORU like any other. The messages are
built by `lab.results.outbound` and queued by `lab.results.outbox`, as every outbound message.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.catalog.rules import TestRule
from lab.hl7.codec.oru import build_oru
from lab.hl7.codec.types import CodedValue, ResultStatus
from lab.results import outbox
from lab.results.outbound import build_withdrawal_report
from lab.specimens import service as specimens
from lab.tables import Hl7Message, LabTest, Order, OrderedTest, Specimen, TestStatus
from lab.tables.hl7 import WithdrawalKind

GENERATED = "G"  # HL7 table 0065: generated order; reflex order
LAB_TO_OBTAIN = "L"  # HL7 table 0065: lab to obtain specimen from patient


def tube_serves(test: TestRule, tube: Specimen) -> bool:
    """Whether the tube can serve the test: the same specimen type and container."""
    return test.specimen_type == tube.specimen_type and test.container == tube.container


def add_on_new_specimen(
    session: Session, *, actor: Actor, order: Order, test: TestRule, rule: str
) -> tuple[OrderedTest, Specimen]:
    """The test on the order with a new tube of the kind it needs (expected: to be taken)."""
    item = OrderedTest(
        test_id=test.id, status=TestStatus.ORDERED, add_on=True, added_by_rule=rule[:120]
    )
    order.tests.append(item)
    if order.status != "cancelled":
        order.status = "active"
    session.flush()
    (tube,) = specimens.create_for_tests(session, actor=actor, order=order, tests=[item])
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="order.add_test",
        entity_type="order",
        entity_id=order.filler_order_number,
        patient_id=order.patient_id,
        after={
            "test_id": test.id,
            "specimen_id": tube.id,
            "added_by_rule": item.added_by_rule,
            "new_specimen": tube.accession_number,
        },
        detail=f"{item.added_by_rule}; a new specimen is needed",
    )
    return item, tube


def tell_record(
    session: Session,
    *,
    order: Order,
    added: OrderedTest,
    note: str,
    new_specimen: Specimen | None,
    now: datetime,
) -> Hl7Message:
    """Queue the ORU that tells the record of a test the lab added (at once, not held)."""
    test = session.get(LabTest, added.test_id)
    assert test is not None  # foreign key
    row = outbox._outbox_row(session, order, now=now)
    base = build_withdrawal_report(
        session,
        order,
        [added],
        kind=WithdrawalKind.CANCELLED,
        reason="",
        reason_code="",
        specimen=None,
        control_id=row.control_id,
        now=now,
    )
    local = CodedValue(code=test.code, text=test.name_nb, coding_system="L")
    loinc = (
        CodedValue(code=test.loinc, text=test.name_en, coding_system="LN") if test.loinc else None
    )
    report = replace(
        base,
        service=loinc or local,
        alternate_service=local if loinc else None,
        observations=(),
        specimen_action=LAB_TO_OBTAIN if new_specimen is not None else GENERATED,
        result_status=(
            ResultStatus.ORDER_RECEIVED if new_specimen is not None else ResultStatus.IN_PROCESS
        ),
        comments=(note,),
    )
    row.raw = build_oru(report).encode()
    session.flush()
    return row
