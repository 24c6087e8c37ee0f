"""What an order response (ORL^O22) tells the record about the orders a message placed or
cancelled: per test ORC-1 `OK` (accepted) or `CR` (cancelled as requested), ORC-5 the order
status (table 0038: `SC` in process, scheduled; `CA` cancelled), our filler order number, the
test as LOINC and local code, and the tube it will be done on (SPM-2, SPM-4).

Read in the transaction that processed the message, so the answer says what was committed.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.hl7.codec.ack import OrderLine
from lab.hl7.codec.er7 import Message
from lab.tables import LabTest, Order, OrderedTest, Specimen, TestStatus

FILLER_NAMESPACE = "LAB"


def _controls(message: Message) -> dict[str, str]:
    """Placer order number -> ORC-1 of the group that named it (NW or CA)."""
    controls: dict[str, str] = {}
    current = ""
    for segment in message.segments[1:]:
        if segment.name == "ORC":
            current = segment.text(1)
            placer = segment.component(2, 1)
            if placer:
                controls.setdefault(placer, current)
        elif segment.name == "OBR":
            placer = segment.component(2, 1)
            if placer:
                controls.setdefault(placer, current)
    return controls


def _service(test: LabTest) -> tuple[str, ...]:
    local = (test.code, test.name_nb, "L")
    if test.loinc:
        return (test.loinc, test.name_en, "LN", *local)
    return local


def order_lines(session: Session, message: Message, order_ids: tuple[int, ...]) -> list[OrderLine]:
    if not order_ids:
        return []
    controls = _controls(message)
    orders = {
        order.id: order for order in session.scalars(select(Order).where(Order.id.in_(order_ids)))
    }
    rows = session.execute(
        select(OrderedTest, LabTest, Specimen)
        .join(LabTest, LabTest.id == OrderedTest.test_id)
        .outerjoin(Specimen, Specimen.id == OrderedTest.specimen_id)
        .where(OrderedTest.order_id.in_(order_ids))
        .order_by(OrderedTest.order_id, OrderedTest.id)
    ).tuples()
    lines: list[OrderLine] = []
    for ordered, test, tube in rows:
        order = orders[ordered.order_id]
        cancelling = controls.get(order.placer_order_number) == "CA"
        cancelled = ordered.status == TestStatus.CANCELLED
        if cancelling != cancelled:
            continue  # a new order lists its live tests; a cancel lists what it cancelled
        lines.append(
            OrderLine(
                control="CR" if cancelled else "OK",
                status="CA" if cancelled else "SC",
                placer=(order.placer_order_number, order.placer_namespace),
                filler=(order.filler_order_number, FILLER_NAMESPACE),
                service=_service(test),
                accession_number=tube.accession_number if tube is not None else "",
                specimen_type=tube.specimen_type if tube is not None else "",
            )
        )
    return lines
