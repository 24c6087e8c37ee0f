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
from lab.rulesets.shadow import shadow_report
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


class ShadowRowOut(BaseModel):
    result_id: int
    result_version: int
    decided_at: str
    shadow_release: bool
    shadow_holds: list[str]
    active_release: bool
    active_holds: list[str]
    active_version: int | None
    status_now: str
    disagreement: str | None


class ShadowOut(BaseModel):
    kind: str
    version: int
    state: str
    decided: int
    shadow_released: int
    active_released: int
    agree: int
    disagreements: dict[str, int]
    decisions: list[ShadowRowOut]


@router.get("/autoverification/{version}/shadow", response_model=ShadowOut)
def shadow_decisions(
    version: int, session: SessionDep, actor: ManageRules, limit: int = 200
) -> ShadowOut:
    """What the version decided in shadow for each result as it was recorded, beside the active
    version's decision and what became of the result (hold codes and statuses only)."""
    report = shadow_report(session, version=version, limit=max(0, min(limit, 1000)))
    return ShadowOut(
        kind=report.kind,
        version=report.version,
        state=report.state,
        decided=report.decided,
        shadow_released=report.shadow_released,
        active_released=report.active_released,
        agree=report.agree,
        disagreements=dict(report.disagreements),
        decisions=[
            ShadowRowOut(
                result_id=row.result_id,
                result_version=row.result_version,
                decided_at=row.decided_at,
                shadow_release=row.shadow_release,
                shadow_holds=list(row.shadow_holds),
                active_release=row.active_release,
                active_holds=list(row.active_holds),
                active_version=row.active_version,
                status_now=row.status_now,
                disagreement=row.disagreement.value if row.disagreement else None,
            )
            for row in report.rows
        ],
    )
