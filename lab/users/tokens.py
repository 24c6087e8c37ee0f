"""API tokens: made, listed, revoked, expired.

A token is shown once; only its SHA-256 is stored. Each has an expiry (`LAB_TOKEN_DAYS`, 90 days
unless the operator asks for another). Nobody mints a token in another's name through the web
or the API: a signed-in person makes tokens for themselves only, and only from a session that
was opened with their password (a token cannot make more tokens). A token for anyone else
(an analyser, the record's integration, a script of a colleague) is made by the operator on the
server with `lab token create USER`. A user may revoke their own tokens; an administrator and
the operator may revoke anyone's.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from lab.tables import ApiToken, User
from lab.timeutil import utcnow
from lab.users.roles import Permission, permissions_of

DEFAULT_DAYS = 90
MAX_DAYS = 3650


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    id: int
    token: str
    expires_at: datetime


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_operator(actor: Actor) -> bool:
    """The operator of the server (the `lab` command), not a person signed in to the web."""
    return actor.user_id is None and actor.channel == "cli"


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username}", code="user_unknown", params={"username": username})
    return user


def create_token(
    session: Session,
    *,
    actor: Actor,
    username: str,
    label: str = "",
    days: int = DEFAULT_DAYS,
) -> NewToken:
    """A new token for `username`, which must be the actor themselves unless the operator asks.

    A person makes one from a web session (signed in with the password): a caller holding a
    token cannot extend its own life by minting another.
    """
    user = _user(session, username)
    if not is_operator(actor):
        if actor.user_id != user.id:
            raise PermissionDenied(
                "a token can be made only for yourself; the operator makes tokens for others "
                "on the server (lab token create USER)",
                code="token_for_other",
            )
        if actor.channel != "ui":
            raise PermissionDenied(
                "make tokens from a signed-in session, not with a token", code="token_by_token"
            )
    if not user.active:
        raise NotFound(
            f"no active user {username}", code="user_unknown", params={"username": username}
        )
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput.field(
            "days", f"between 1 and {MAX_DAYS}", code="token_days", params={"n": MAX_DAYS}
        )
    token = "lab_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=days)
    row = ApiToken(
        user_id=user.id, token_sha256=sha256_hex(token), label=label, expires_at=expires_at
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.create",
        entity_type="user",
        entity_id=user.id,
        after={"token_id": row.id, "expires_at": expires_at.isoformat()},
        detail=label,
    )
    return NewToken(id=row.id, token=token, expires_at=expires_at)


def list_tokens(session: Session, username: str) -> list[ApiToken]:
    """The user's tokens, newest first (ids and dates; the secrets are not stored)."""
    user = _user(session, username)
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


def state_of(token: ApiToken, now: datetime | None = None) -> str:
    now = now or utcnow()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def revoke_token(session: Session, *, actor: Actor, token_id: int) -> ApiToken:
    """Revoke one token: its owner, an administrator or the operator may."""
    row = session.get(ApiToken, token_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no token {token_id}", code="token_unknown", params={"id": token_id})
    may = (
        is_operator(actor)
        or actor.user_id == row.user_id
        or Permission.MANAGE_USERS in permissions_of(list(actor.roles))
    )
    if not may:
        raise PermissionDenied("you may revoke only your own tokens", code="token_not_yours")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_by = actor.username[:64]
        audit.record(
            session,
            actor=actor,
            action="token.revoke",
            entity_type="user",
            entity_id=row.user_id,
            after={"token_id": row.id},
        )
    return row


def revoke_all(session: Session, *, actor: Actor, user: User) -> int:
    """Revoke every live token of the user (a new password, a disabled account)."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_by=actor.username[:64])
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def user_for_token(session: Session, token: str) -> tuple[User, ApiToken]:
    """The user a bearer token belongs to; a revoked or expired token, or a disabled user: 401."""
    now = utcnow()
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_sha256 == sha256_hex(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        raise AuthenticationRequired("unknown or revoked token")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationRequired("the token has expired")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise AuthenticationRequired("the token's user is not active")
    # Touch at most once a minute: a busy interface must not write on every call.
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return user, row
