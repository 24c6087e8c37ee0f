"""JSON routes for rule set versions (admin and lab physician): list, read, load, change state.

Loading needs the permission to manage rules; activation needs the permission to activate
them (the lab physician). A refused document answers 422 with one problem per line:
`{"field": "line 6", "message": "test.XYZ: unknown test 'XYZ' (not in the catalog)"}`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lab.audit import Actor
from lab.deps import SessionDep, require
from lab.rulesets import service
from lab.users.roles import Permission

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])

ManageRules = Annotated[Actor, Depends(require(Permission.MANAGE_RULES))]


class RuleSetVersionOut(BaseModel):
    kind: str
    version: int
    state: str
    sha256: str
    description: str
    created_at: str | None
    created_by: str
    activated_at: str | None
    activated_by: str | None


class RuleSetVersionText(RuleSetVersionOut):
    text: str


class RuleSetIn(BaseModel):
    text: str = Field(min_length=1, max_length=service.MAX_TEXT)
    description: str = Field(default="", max_length=2000)


class StateIn(BaseModel):
    state: Literal["active", "shadow", "draft"]


def _out(data: dict[str, Any]) -> RuleSetVersionOut:
    return RuleSetVersionOut(**data)


@router.get("", response_model=list[RuleSetVersionOut])
def list_versions(
    session: SessionDep, actor: ManageRules, kind: str | None = None
) -> list[RuleSetVersionOut]:
    return [_out(service.snapshot(row)) for row in service.list_versions(session, kind=kind)]


@router.get("/{kind}/{version}", response_model=RuleSetVersionText)
def get_version(
    kind: str, version: int, session: SessionDep, actor: ManageRules
) -> RuleSetVersionText:
    row = service.get(session, kind=kind, version=version)
    return RuleSetVersionText(**service.snapshot(row), text=row.text)


@router.post("/{kind}", response_model=RuleSetVersionOut, status_code=201)
def load_version(
    kind: str, body: RuleSetIn, session: SessionDep, actor: ManageRules
) -> RuleSetVersionOut:
    """Store a new draft version (checked against the catalog; refused whole with line numbers)."""
    row = service.load(
        session, actor=actor, kind=kind, document=body.text, description=body.description
    )
    return _out(service.snapshot(row))


@router.post("/{kind}/{version}/state", response_model=RuleSetVersionOut)
def change_state(
    kind: str, version: int, body: StateIn, session: SessionDep, actor: ManageRules
) -> RuleSetVersionOut:
    """`active` (lab physician), `shadow` or back to `draft` (rule managers); audited."""
    row = service.change_state(session, actor=actor, kind=kind, version=version, state=body.state)
    return _out(service.snapshot(row))
