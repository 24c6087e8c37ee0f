"""Manual requisition: a paper requisition typed in by the lab (patient and order in one form).

The form goes through the same services as an order from the record (patients.upsert through
orders.place): the same identifier checks (check digits, D- and H-numbers), the same catalog
lookup and the same rules. Every problem found is shown next to its field, with what was typed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Depends, Form, Request, Response
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.catalog import service as catalog
from lab.deps import SessionDep
from lab.errors import FieldProblem, InvalidInput, LabError
from lab.orders import service as orders
from lab.orders.service import OrderRequest, TestRequest
from lab.patients import service as patients
from lab.patients.identifiers import IdentifierError, parse_national_identifier
from lab.patients.service import Demographics, IdentifierInput
from lab.tables import Priority
from lab.timeutil import OSLO, as_utc
from lab.users.roles import Permission
from lab.web.auth import PlaceOrdersForm, page_requires
from lab.web.pages import PostedForm, page_router, problem_fields, redirect_after_post
from lab.web.templating import render

router = page_router()

PlaceOrdersPage = Annotated[Actor, Depends(page_requires(Permission.PLACE_ORDERS))]
# Where a service names a field, the form field it belongs to.
FORM_FIELD = {
    "identifiers": "national_id",
    "identifiers[0]": "national_id",
    "family_name": "family_name",
    "birth_date": "birth_date",
    "sex": "sex",
    "placer_order_number": "placer_order_number",
    "priority": "priority",
    "tests": "tests",
    "patient": "national_id",
}


def _form_context(
    session: Session, *, values: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    return {
        "tests": [t for t in catalog.list_tests(session) if t.active],
        "priorities": [p.value for p in Priority],
        "values": values,
        "errors": errors,
    }


@router.get("/requisitions/new")
def requisition_form(request: Request, session: SessionDep, actor: PlaceOrdersPage) -> Response:
    values = {"priority": "routine", "tests": [], "sex": ""}
    return render(request, "orders/new.html", _form_context(session, values=values, errors={}))


def _identifier(value: str) -> IdentifierInput:
    """A fødselsnummer, D-number or help number, by what the number itself is; a number that
    is none of them is checked as a fødselsnummer, so the reader learns why it is wrong."""
    try:
        kind = parse_national_identifier(value.strip()).kind.value
    except IdentifierError:
        kind = "FNR"
    return IdentifierInput(value=value.strip(), type_code=kind)


def _date(text: str, field: str, problems: list[FieldProblem]) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        problems.append(FieldProblem(field, "not a date", "date_invalid"))
        return None


def _moment(text: str, field: str, problems: list[FieldProblem]) -> datetime | None:
    if not text.strip():
        return None
    try:
        return as_utc(datetime.fromisoformat(text.strip()).replace(tzinfo=OSLO))
    except ValueError:
        problems.append(FieldProblem(field, "not a date and time", "date_invalid"))
        return None


@router.post("/requisitions/new")
def place_requisition(
    request: Request,
    session: SessionDep,
    actor: PlaceOrdersForm,
    form: PostedForm,
    national_id: Annotated[str, Form()] = "",
    family_name: Annotated[str, Form()] = "",
    given_name: Annotated[str, Form()] = "",
    birth_date: Annotated[str, Form()] = "",
    sex: Annotated[str, Form()] = "",
    placer_order_number: Annotated[str, Form()] = "",
    priority: Annotated[str, Form()] = "routine",
    clinician_name: Annotated[str, Form()] = "",
    clinician_hpr: Annotated[str, Form()] = "",
    location: Annotated[str, Form()] = "",
    clinical_info: Annotated[str, Form()] = "",
    collected_at: Annotated[str, Form()] = "",
) -> Response:
    codes = [c for c in form.getlist("tests") if isinstance(c, str)]
    values: dict[str, Any] = {
        "national_id": national_id,
        "family_name": family_name,
        "given_name": given_name,
        "birth_date": birth_date,
        "sex": sex,
        "placer_order_number": placer_order_number,
        "priority": priority,
        "clinician_name": clinician_name,
        "clinician_hpr": clinician_hpr,
        "location": location,
        "clinical_info": clinical_info,
        "collected_at": collected_at,
        "tests": codes,
    }
    problems: list[FieldProblem] = []
    demographics = Demographics(
        identifiers=[_identifier(national_id)] if national_id.strip() else [],
        family_name=family_name.strip(),
        given_name=given_name.strip(),
        birth_date=_date(birth_date, "birth_date", problems),
        sex=sex or None,
    )
    try:
        patients.check_demographics(demographics)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    if clinician_hpr.strip() and not clinician_hpr.strip().isdigit():
        problems.append(FieldProblem("clinician_hpr", "digits only", "hpr_digits"))
    request_data = OrderRequest(
        patient=demographics,
        placer_order_number=placer_order_number.strip(),
        placer_namespace="LAB-MANUAL",
        tests=[TestRequest(code=code) for code in codes],
        priority=priority,
        ordering_clinician=_clinician(clinician_name, clinician_hpr),
        ordering_location=location.strip(),
        clinical_info=clinical_info.strip(),
        collected_at=_moment(collected_at, "collected_at", problems),
        source="manual",
    )
    try:
        if problems:
            # Check the order's own fields too, so every problem shows at once.
            orders.check_request(session, request_data)
            raise InvalidInput(problems[0].message, problems=problems)
        order = orders.place(session, actor=actor, request=request_data)
    except LabError as exc:
        session.rollback()
        found = problems + [p for p in exc.problems if p not in problems]
        if exc.code == "order_exists":
            found.append(FieldProblem("placer_order_number", exc.message, exc.code, exc.params))
        elif not found:
            found = [FieldProblem("_form", exc.message, exc.code, exc.params)]
        errors = problem_fields(request, found, FORM_FIELD)
        context = _form_context(session, values=values, errors=errors)
        return render(request, "orders/new.html", context, status_code=exc.http_status)
    return redirect_after_post(f"/orders/{order.filler_order_number}", "order_placed")


def _clinician(name: str, hpr: str) -> str:
    """Stored as the record sends it (XCN: number^family^given^^^^^^HPR), so screens and reports
    show it the same way whichever way the order came."""
    name, hpr = name.strip(), hpr.strip()
    if not name and not hpr:
        return ""
    given, _, family = name.rpartition(" ")
    if not family:
        family, given = given, ""
    return f"{hpr}^{family}^{given}^^^^^^{'HPR' if hpr else ''}"
