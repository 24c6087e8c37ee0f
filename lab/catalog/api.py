"""JSON routes for the test catalog."""

from __future__ import annotations

from fastapi import APIRouter

from lab.catalog import service
from lab.catalog.schemas import LabTestIn, LabTestOut, PanelOut
from lab.deps import ManageCatalog, ReadCatalog, SessionDep
from lab.errors import InvalidInput

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])


@router.get("/tests", response_model=list[LabTestOut])
def list_tests(session: SessionDep, actor: ReadCatalog) -> list[LabTestOut]:
    return [LabTestOut.model_validate(t) for t in service.list_tests(session)]


@router.get("/tests/{code}", response_model=LabTestOut)
def get_test(code: str, session: SessionDep, actor: ReadCatalog) -> LabTestOut:
    return LabTestOut.model_validate(service.get_by_code(session, code))


@router.put("/tests/{code}", response_model=LabTestOut)
def save_test(code: str, data: LabTestIn, session: SessionDep, actor: ManageCatalog) -> LabTestOut:
    """Create or replace a test definition (admin)."""
    if data.code != code.upper():
        raise InvalidInput.field("code", "the code in the body must match the URL")
    test = service.save_test(session, actor=actor, data=data)
    return LabTestOut.model_validate(test)


@router.get("/panels", response_model=list[PanelOut])
def list_panels(session: SessionDep, actor: ReadCatalog) -> list[PanelOut]:
    return [
        PanelOut(
            code=p.code,
            name_nb=p.name_nb,
            name_en=p.name_en,
            tests=[m.test.code for m in p.members],
        )
        for p in service.list_panels(session)
    ]
