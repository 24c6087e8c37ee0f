"""JSON routes for users and tokens (admin), and `me`."""

from __future__ import annotations

from fastapi import APIRouter

from lab.deps import CurrentActor, ManageUsers, SessionDep
from lab.users import service
from lab.users.roles import permissions_of
from lab.users.schemas import MeOut, TokenIn, TokenOut, UserIn, UserOut

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.get("/me", response_model=MeOut)
def me(actor: CurrentActor) -> MeOut:
    """Who the caller is and what they may do."""
    roles = sorted(actor.roles)
    return MeOut(
        username=actor.username,
        roles=roles,
        permissions=sorted(p.value for p in permissions_of(roles)),
    )


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
    )
    return UserOut.model_validate(user)


@router.post("/users/{username}/tokens", response_model=TokenOut, status_code=201)
def create_token(username: str, data: TokenIn, session: SessionDep, actor: ManageUsers) -> TokenOut:
    token = service.create_token(session, actor=actor, username=username, label=data.label)
    return TokenOut(username=username, token=token)
