"""Rule set pages (lab physician and admin): every version of the autoverification rules, the
formulas and the reflex rules; a version's text; a dry run of a formula or reflex version over
the stored results; load a new draft; shadow and activate. Thin: parse, call the services,
render. Who may do what is the services' (activation: the lab physician only); every load,
state change and dry run is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request, Response
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.deps import SessionDep
from lab.errors import LabError
from lab.rules import RuleSetError
from lab.rulesets import service
from lab.rulesets.replay import DryRun, dry_run
from lab.tables.rulesets import RuleKind
from lab.users.roles import Permission
from lab.web.auth import form_requires, page_requires
from lab.web.pages import page_router, redirect_after_post
from lab.web.templating import render

router = page_router()

RulesPage = Annotated[Actor, Depends(page_requires(Permission.MANAGE_RULES))]
RulesForm = Annotated[Actor, Depends(form_requires(Permission.MANAGE_RULES))]
Text = Annotated[str, Form()]
KINDS = [kind.value for kind in RuleKind]


def _list(
    request: Request,
    session: Session,
    *,
    problems: list[str] | None = None,
    kept: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    versions = {kind: service.list_versions(session, kind=kind) for kind in KINDS}
    return render(
        request,
        "rules/list.html",
        {
            "kinds": KINDS,
            "versions": versions,
            "problems": problems or [],
            "kept": kept or {},
        },
        status_code=status_code,
    )


@router.get("/rules")
def rules_page(request: Request, session: SessionDep, actor: RulesPage) -> Response:
    return _list(request, session)


@router.post("/rules/load")
def load(
    request: Request,
    session: SessionDep,
    actor: RulesForm,
    kind: Text,
    text: Annotated[str, Form(max_length=service.MAX_TEXT)] = "",
    description: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    try:
        row = service.load(session, actor=actor, kind=kind, document=text, description=description)
    except LabError as exc:
        session.rollback()
        lines = [f"{p.field}: {p.message}" for p in exc.problems] or [exc.message]
        return _list(
            request,
            session,
            problems=lines,
            kept={"kind": kind, "text": text, "description": description},
            status_code=exc.http_status,
        )
    return redirect_after_post(f"/rules/{row.kind}/{row.version}")


def _version(
    request: Request,
    session: Session,
    *,
    kind: str,
    version: int,
    dry: DryRun | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    row = service.get(session, kind=kind, version=version)
    return render(
        request,
        "rules/version.html",
        {"row": row, "dry": dry, "error": error, "dry_run_kinds": ("formulas", "reflex")},
        status_code=status_code,
    )


@router.get("/rules/{kind}/{version}")
def version_page(
    request: Request, kind: str, version: int, session: SessionDep, actor: RulesPage
) -> Response:
    return _version(request, session, kind=kind, version=version)


@router.post("/rules/{kind}/{version}/dry-run")
def dry_run_form(
    request: Request, kind: str, version: int, session: SessionDep, actor: RulesForm
) -> Response:
    """What the formula or reflex version would have produced over the stored results."""
    try:
        outcome = dry_run(session, kind=kind, version=version)
    except (LabError, RuleSetError) as exc:
        session.rollback()
        return _version(
            request, session, kind=kind, version=version, error=exc.message, status_code=422
        )
    row = service.get(session, kind=kind, version=version)
    audit.record(
        session,
        actor=actor,
        action="ruleset.dry_run",
        entity_type="rule_set_version",
        entity_id=row.id,
        after={"kind": row.kind, "version": row.version, "looked_at": outcome.looked_at},
    )
    return _version(request, session, kind=kind, version=version, dry=outcome)


@router.post("/rules/{kind}/{version}/state")
def change_state(
    request: Request,
    kind: str,
    version: int,
    session: SessionDep,
    actor: RulesForm,
    state: Text,
) -> Response:
    """Activate (lab physician), run in shadow or back to draft; refused ones are shown."""
    try:
        service.change_state(session, actor=actor, kind=kind, version=version, state=state)
    except LabError as exc:
        session.rollback()
        lines = [exc.message, *(f"{p.field}: {p.message}" for p in exc.problems)]
        return _version(
            request,
            session,
            kind=kind,
            version=version,
            error="; ".join(lines),
            status_code=exc.http_status,
        )
    return redirect_after_post(f"/rules/{kind}/{version}")
