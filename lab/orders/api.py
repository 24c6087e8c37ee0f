"""JSON routes for orders."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from lab.deps import CancelOrders, PlaceOrders, ReadPatientData, SessionDep
from lab.orders import service
from lab.orders.schemas import (
    AddTestIn,
    CancelTestsIn,
    OrderedTestOut,
    OrderIn,
    OrderOut,
    SpecimenBrief,
)
from lab.patients.api import demographics
from lab.tables import Order, Specimen

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])


def order_out(session: Session, order: Order) -> OrderOut:
    tubes = service.specimens_of(session, order)
    by_id: dict[int, Specimen] = {s.id: s for s in tubes}
    return OrderOut(
        filler_order_number=order.filler_order_number,
        placer_order_number=order.placer_order_number,
        placer_namespace=order.placer_namespace,
        patient_id=order.patient_id,
        status=order.status,
        priority=order.priority,
        ordering_clinician=order.ordering_clinician,
        ordering_location=order.ordering_location,
        clinical_info=order.clinical_info,
        created_at=order.created_at,
        tests=[
            OrderedTestOut(
                code=t.test.code,
                name=t.test.name_nb,
                status=t.status,
                specimen=by_id[t.specimen_id].accession_number if t.specimen_id in by_id else None,
                add_on=t.add_on,
                panel=t.panel_code,
            )
            for t in order.tests
        ],
        specimens=[
            SpecimenBrief(
                accession_number=s.accession_number,
                status=s.status,
                container=s.container,
                specimen_type=s.specimen_type,
            )
            for s in tubes
        ],
    )


@router.post("", response_model=OrderOut, status_code=201)
def place_order(data: OrderIn, session: SessionDep, actor: PlaceOrders) -> OrderOut:
    """Place an order; its specimens and accession numbers are made at once."""
    request = service.OrderRequest(
        patient=demographics(data.patient) if data.patient else None,
        patient_id=data.patient_id,
        placer_order_number=data.placer_order_number,
        placer_namespace=data.placer_namespace,
        tests=[service.TestRequest(code=t.code, system=t.system) for t in data.tests],
        priority=data.priority,
        ordering_clinician=data.ordering_clinician,
        ordering_location=data.ordering_location,
        clinical_info=data.clinical_info,
        collected_at=data.collected_at,
        source="api",
    )
    order = service.place(session, actor=actor, request=request)
    return order_out(session, order)


@router.get("", response_model=list[OrderOut])
def find_orders(
    placer_order_number: str, session: SessionDep, actor: ReadPatientData
) -> list[OrderOut]:
    found = service.search_by_placer(session, placer_order_number, actor=actor)
    return [order_out(session, o) for o in found]


@router.get("/{filler_order_number}", response_model=OrderOut)
def get_order(filler_order_number: str, session: SessionDep, actor: ReadPatientData) -> OrderOut:
    order = service.read(session, filler_order_number, actor=actor)
    return order_out(session, order)


@router.post("/{filler_order_number}/tests", response_model=OrderOut, status_code=201)
def add_test(
    filler_order_number: str, data: AddTestIn, session: SessionDep, actor: PlaceOrders
) -> OrderOut:
    """Add a test to an existing order (on a specimen already in the lab when one fits)."""
    service.add_test(
        session, actor=actor, filler=filler_order_number, code=data.code, system=data.system
    )
    return order_out(session, service.get_by_filler(session, filler_order_number))


@router.post("/{filler_order_number}/cancel", response_model=OrderOut)
def cancel_tests(
    filler_order_number: str, data: CancelTestsIn, session: SessionDep, actor: CancelOrders
) -> OrderOut:
    """Cancel tests that have no result yet (all open tests when `codes` is omitted)."""
    service.cancel_tests(
        session, actor=actor, filler=filler_order_number, codes=data.codes, reason=data.reason
    )
    return order_out(session, service.get_by_filler(session, filler_order_number))
