"""JSON routes for users and tokens, and `me`.

Tokens: a signed-in person makes and lists their own (`/me/tokens`); an administrator lists
anyone's and revokes any; nobody mints a token in another's name here (the operator does, on
the server). Users: an administrator lists, adds, disables and enables, and sets roles (within
what lab/users/service.py allows a web administrator).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from lab.deps import CurrentActor, ManageUsers, SessionDep
from lab.tables import ApiToken
from lab.users import service, tokens
from lab.users.roles import permissions_of
from lab.users.schemas import (
    AccountChange,
    MeOut,
    RolesIn,
    TokenIn,
    TokenInfo,
    TokenOut,
    UserIn,
    UserOut,
)

router = APIRouter(prefix="/api/v1", tags=["users"])


def _roles(values: dict[str, Any] | None) -> list[str] | None:
    found = (values or {}).get("roles")
    return [str(r) for r in found] if isinstance(found, list) else None


@router.get("/me", response_model=MeOut)
def me(session: SessionDep, actor: CurrentActor) -> MeOut:
    """Who the caller is, what they may do, and who changed their account (roles given)."""
    roles = sorted(actor.roles)
    changes = service.account_changes(session, actor.user_id) if actor.user_id is not None else []
    return MeOut(
        username=actor.username,
        roles=roles,
        permissions=sorted(p.value for p in permissions_of(roles)),
        account_changes=[
            AccountChange(
                at=row.at,
                action=row.action,
                by=row.actor_name,
                roles_before=_roles(row.before),
                roles_after=_roles(row.after),
            )
            for row in changes
        ],
    )


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        state=tokens.state_of(row),
    )


def _new_token(
    request: Request, session: SessionDep, actor: CurrentActor, username: str, data: TokenIn
) -> TokenOut:
    days = data.days or request.app.state.settings.token_days
    made = tokens.create_token(session, actor=actor, username=username, label=data.label, days=days)
    return TokenOut(username=username, id=made.id, token=made.token, expires_at=made.expires_at)


@router.get("/me/tokens", response_model=list[TokenInfo])
def my_tokens(session: SessionDep, actor: CurrentActor) -> list[TokenInfo]:
    """The caller's own tokens: ids, dates, state; never the secret."""
    return [_info(row) for row in tokens.list_tokens(session, actor.username)]


@router.post("/me/tokens", response_model=TokenOut, status_code=201)
def make_my_token(
    request: Request, data: TokenIn, session: SessionDep, actor: CurrentActor
) -> TokenOut:
    """A new token for the caller, from a signed-in session (not from a token)."""
    return _new_token(request, session, actor, actor.username, data)


@router.post("/tokens/{token_id}/revoke", response_model=TokenInfo)
def revoke_token(token_id: int, session: SessionDep, actor: CurrentActor) -> TokenInfo:
    """Revoke a token: its owner, or an administrator."""
    return _info(tokens.revoke_token(session, actor=actor, token_id=token_id))


@router.get("/users", response_model=list[UserOut])
def list_users(session: SessionDep, actor: ManageUsers) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(data: UserIn, session: SessionDep, actor: ManageUsers) -> UserOut:
    user = service.create_user(
        session,
        actor=actor,
        username=data.username,
        display_name=data.display_name,
        roles=data.roles,
        password=data.password,
        title=data.title,
    )
    return UserOut.model_validate(user)


@router.get("/users/{username}/tokens", response_model=list[TokenInfo])
def user_tokens(username: str, session: SessionDep, actor: ManageUsers) -> list[TokenInfo]:
    return [_info(row) for row in tokens.list_tokens(session, username)]


@router.post("/users/{username}/tokens", response_model=TokenOut, status_code=201)
def create_token(
    request: Request, username: str, data: TokenIn, session: SessionDep, actor: CurrentActor
) -> TokenOut:
    """Only for yourself (as `/me/tokens`): anyone else's answers 403."""
    return _new_token(request, session, actor, username, data)


@router.post("/users/{username}/disable", response_model=UserOut)
def disable_user(username: str, session: SessionDep, actor: ManageUsers) -> UserOut:
    """Disable: the user's sessions end and their tokens are revoked at once."""
    return UserOut.model_validate(
        service.set_active(session, actor=actor, username=username, active=False)
    )


@router.post("/users/{username}/enable", response_model=UserOut)
def enable_user(username: str, session: SessionDep, actor: ManageUsers) -> UserOut:
    return UserOut.model_validate(
        service.set_active(session, actor=actor, username=username, active=True)
    )


@router.put("/users/{username}/roles", response_model=UserOut)
def set_roles(username: str, data: RolesIn, session: SessionDep, actor: ManageUsers) -> UserOut:
    """Set the roles; clinical and machine roles can only be taken away here."""
    return UserOut.model_validate(
        service.set_roles(session, actor=actor, username=username, roles=data.roles)
    )
