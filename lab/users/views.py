"""User administration (administrators only; no patient data here): add a user, reset the
password, disable or enable, lift a lockout, set the roles, and list and revoke tokens. Each
change is audited by the users service; a refused form comes back with the reason next to the
field. What a web administrator may not do (give a clinical or machine role, reset the password
of a clinical account, make a token for anyone) is refused by the service and not offered here:
the operator does it on the server."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request, Response
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.deps import SessionDep
from lab.errors import LabError
from lab.timeutil import utcnow
from lab.users import service as users
from lab.users import tokens
from lab.users.roles import OPERATOR_ROLES, Permission, Role, holds_any
from lab.web.auth import CurrentUserPage, FormUser, ManageUsersPage, form_requires
from lab.web.pages import (
    PostedForm,
    error_message,
    field_errors,
    notice_of,
    page_router,
    redirect_after_post,
)
from lab.web.templating import render

router = page_router()

ManageUsersForm = Annotated[Actor, Depends(form_requires(Permission.MANAGE_USERS))]
# Roles a web administrator may give a new account; the clinical roles (technician, reviewer,
# physician) and the machine roles are given by the operator (`lab user add`, `lab user roles`).
WEB_ROLES = tuple(role for role in Role if role not in OPERATOR_ROLES)


def _context(
    session: Session,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    listed = users.list_users(session)
    return {
        "users": listed,
        "roles": [r.value for r in Role],
        "person_roles": [r.value for r in WEB_ROLES],
        "operator_roles": [r.value for r in OPERATOR_ROLES],
        "operator_accounts": {
            u.username for u in listed if holds_any(list(u.roles), OPERATOR_ROLES)
        },
        "tokens": {u.username: tokens.list_tokens(session, u.username) for u in listed},
        "token_state": tokens.state_of,
        "now": utcnow(),
        "errors": errors or {},
        "values": values or {},
        "min_password": users.MIN_PASSWORD_LENGTH,
    }


@router.get("/admin/users")
def users_page(request: Request, session: SessionDep, actor: ManageUsersPage) -> Response:
    context = _context(session)
    context["notice"] = notice_of(request)
    return render(request, "users/users.html", context)


def _refused(
    request: Request, session: Session, target: str, exc: LabError, kept: dict[str, Any]
) -> Response:
    session.rollback()
    context = _context(session, errors={target: field_errors(request, exc)}, values={target: kept})
    context["notice"] = None
    return render(request, "users/users.html", context, status_code=exc.http_status)


@router.post("/admin/users")
def add_user(
    request: Request,
    session: SessionDep,
    actor: ManageUsersForm,
    form: PostedForm,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    roles = [r for r in form.getlist("roles") if isinstance(r, str)]
    try:
        users.create_user(
            session,
            actor=actor,
            username=username.strip(),
            display_name=display_name.strip(),
            title=title,
            roles=roles,
            password=password,
        )
    except LabError as exc:
        kept = {"username": username, "display_name": display_name, "title": title, "roles": roles}
        return _refused(request, session, "_new", exc, kept)
    return redirect_after_post("/admin/users", "user_added")


@router.post("/admin/users/{username}/name")
def set_name(
    request: Request,
    username: str,
    session: SessionDep,
    actor: ManageUsersForm,
    display_name: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
) -> Response:
    """Full name and title, printed with "Godkjent av" on the result reports."""
    try:
        users.set_name(
            session, actor=actor, username=username, display_name=display_name, title=title
        )
    except LabError as exc:
        kept = {"display_name": display_name, "title": title}
        return _refused(request, session, username, exc, kept)
    return redirect_after_post("/admin/users", "name_set")


@router.post("/admin/users/{username}/password")
def reset_password(
    request: Request,
    username: str,
    session: SessionDep,
    actor: ManageUsersForm,
    password: Annotated[str, Form()] = "",
) -> Response:
    try:
        users.set_password(session, actor=actor, username=username, password=password)
    except LabError as exc:
        return _refused(request, session, username, exc, {})
    return redirect_after_post("/admin/users", "password_set")


@router.post("/admin/users/{username}/active")
def set_active(
    request: Request,
    username: str,
    session: SessionDep,
    actor: ManageUsersForm,
    active: Annotated[str, Form()] = "",
) -> Response:
    try:
        users.set_active(session, actor=actor, username=username, active=active == "yes")
    except LabError as exc:
        return _refused(request, session, username, exc, {})
    return redirect_after_post(
        "/admin/users", "user_enabled" if active == "yes" else "user_disabled"
    )


@router.post("/admin/users/{username}/unlock")
def unlock(
    request: Request, username: str, session: SessionDep, actor: ManageUsersForm
) -> Response:
    try:
        users.unlock(session, actor=actor, username=username)
    except LabError as exc:
        return _refused(request, session, username, exc, {})
    return redirect_after_post("/admin/users", "user_unlocked")


@router.post("/admin/users/{username}/roles")
def set_roles(
    request: Request, username: str, session: SessionDep, actor: ManageUsersForm, form: PostedForm
) -> Response:
    roles = [r for r in form.getlist("roles") if isinstance(r, str)]
    try:
        users.set_roles(session, actor=actor, username=username, roles=roles)
    except LabError as exc:
        return _refused(request, session, username, exc, {"roles": roles})
    return redirect_after_post("/admin/users", "roles_set")


@router.post("/admin/users/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: int, session: SessionDep, actor: ManageUsersForm
) -> Response:
    try:
        tokens.revoke_token(session, actor=actor, token_id=token_id)
    except LabError as exc:
        return _refused(request, session, "_tokens", exc, {})
    return redirect_after_post("/admin/users", "token_revoked")


# --- the signed-in person's own account: their roles and who gave them, their tokens ----------


def _account(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    context: dict[str, Any] = {
        "roles": sorted(actor.roles),
        "changes": users.account_changes(session, actor.user_id) if actor.user_id else [],
        "tokens": tokens.list_tokens(session, actor.username),
        "token_state": tokens.state_of,
        "default_days": request.app.state.settings.token_days,
        "new_token": None,
        "error": None,
        "notice": notice_of(request),
    }
    context.update(extra)
    status = 200 if context["error"] is None else int(extra.get("status_code", 400))
    context.pop("status_code", None)
    return render(request, "users/account.html", context, status_code=status)


@router.get("/account")
def account_page(request: Request, session: SessionDep, actor: CurrentUserPage) -> Response:
    """My account: my roles and who gave them, my API tokens (made here, shown once)."""
    return _account(request, session, actor)


@router.post("/account/tokens")
def make_my_token(
    request: Request,
    session: SessionDep,
    actor: FormUser,
    label: Annotated[str, Form()] = "",
    days: Annotated[int | None, Form()] = None,
) -> Response:
    try:
        made = tokens.create_token(
            session,
            actor=actor,
            username=actor.username,
            label=label.strip()[:100],
            days=days or request.app.state.settings.token_days,
        )
    except LabError as exc:
        session.rollback()
        return _account(
            request, session, actor, error=error_message(request, exc), status_code=exc.http_status
        )
    return _account(request, session, actor, new_token=made)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_my_token(
    request: Request, token_id: int, session: SessionDep, actor: FormUser
) -> Response:
    try:
        tokens.revoke_token(session, actor=actor, token_id=token_id)
    except LabError as exc:
        session.rollback()
        return _account(
            request, session, actor, error=error_message(request, exc), status_code=exc.http_status
        )
    return redirect_after_post("/account", "token_revoked")
