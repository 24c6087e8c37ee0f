"""The catalog page: every active test with its codes (local, LOINC with the inbound aliases,
NLK), specimen, unit and turnaround target, for a technician or clinician looking a test up.
Thin: read the catalog, render. The catalog holds no patient data."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from lab.audit import Actor
from lab.catalog import service
from lab.deps import SessionDep
from lab.users.roles import Permission
from lab.web.auth import page_requires
from lab.web.pages import page_router
from lab.web.templating import render

router = page_router()

CatalogPage = Annotated[Actor, Depends(page_requires(Permission.READ_CATALOG))]


@router.get("/catalog")
def catalog_page(request: Request, session: SessionDep, actor: CatalogPage) -> Response:
    return render(request, "catalog/tests.html", {"tests": service.list_tests(session)})
