"""Users, passwords (argon2), sign-in with lockout, sessions; tokens are in `tokens`.

Who may give which role: an administrator (web, API) may make accounts and give the roles
that open no patient data (`admin`, `display`), take any role away, disable, and reset the
password of an account that holds no clinical role. Clinical roles (they open patient data or
sign results) and machine roles are given by the operator on the server (`lab user add`,
`lab user roles`): so no single web administrator can make, or sign in as, a physician.
Machine accounts (`instrument`, `interface`) have no password and no other role.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab import audit
from lab.audit import Actor
from lab.errors import (
    AuthenticationRequired,
    Conflict,
    FieldProblem,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from lab.tables import AuditEvent, User, WebSession
from lab.timeutil import utcnow
from lab.users import tokens
from lab.users.roles import (
    MACHINE_ROLES,
    OPERATOR_ROLES,
    Permission,
    Role,
    holds_any,
    permissions_of,
)
from lab.users.tokens import is_operator, sha256_hex

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps sign-in time the same either way.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    user: User
    session_key: str
    csrf_token: str


def actor_for(user: User, channel: str, via: str = "") -> Actor:
    return Actor(
        user_id=user.id,
        username=user.username,
        roles=frozenset(user.roles),
        channel=channel,
        via=via,
    )


def _role_problems(roles: list[str], *, has_password: bool) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    unknown = [r for r in roles if r not in {role.value for role in Role}]
    if unknown or not roles:
        problems.append(
            FieldProblem(
                "roles", f"unknown or missing: {', '.join(unknown) or 'none'}", "roles_missing"
            )
        )
    elif holds_any(roles, MACHINE_ROLES):
        if not set(roles) <= {r.value for r in MACHINE_ROLES}:
            problems.append(
                FieldProblem(
                    "roles", "a machine account holds no person role beside it", "machine_mixed"
                )
            )
        if has_password:
            problems.append(
                FieldProblem(
                    "password",
                    "a machine account has no password: it uses tokens only",
                    "machine_password",
                )
            )
    return problems


def _operator_only(actor: Actor, granted: list[str]) -> None:
    """Clinical and machine roles are given by the operator on the server, never from the web."""
    if granted and holds_any(granted, OPERATOR_ROLES) and not is_operator(actor):
        raise PermissionDenied(
            "clinical and machine roles are given by the operator on the server "
            "(lab user roles USER --role ...)",
            code="role_by_operator",
        )


def require(actor: Actor, permission: Permission) -> None:
    if permission not in permissions_of(list(actor.roles)):
        raise PermissionDenied(
            f"{actor.username} may not {permission.value.replace('_', ' ')}",
            code="not_allowed",
            params={"permission": permission.value},
        )


def get_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    display_name: str,
    roles: list[str],
    password: str | None,
    title: str = "",
) -> User:
    """A new account; `title` (e.g. "overlege") is printed with the full name beside
    "Godkjent av" on the reports of results the user verifies."""
    problems: list[FieldProblem] = []
    title = title.strip()
    if len(title) > 100:
        problems.append(FieldProblem("title", "the name or title is too long", "name_too_long"))
    if not username or not username.isascii() or not username.replace("-", "").isalnum():
        problems.append(
            FieldProblem("username", "use letters, digits and '-' only", "username_chars")
        )
    password = password or None
    problems += _role_problems(roles, has_password=password is not None)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        problems.append(
            FieldProblem(
                "password",
                f"must be at least {MIN_PASSWORD_LENGTH} characters",
                "password_short",
                {"n": MIN_PASSWORD_LENGTH},
            )
        )
    if problems:
        raise InvalidInput("the user cannot be created as given", problems=problems)
    _operator_only(actor, roles)
    if get_by_username(session, username) is not None:
        raise Conflict(
            f"user {username} exists already", code="user_exists", params={"username": username}
        )
    user = User(
        username=username,
        display_name=display_name or username,
        title=title,
        roles=roles,
        password_hash=_hasher.hash(password) if password else None,
        active=True,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.create",
        entity_type="user",
        entity_id=user.id,
        after={"username": username, "roles": roles, "title": title},
    )
    return user


def set_password(
    session: Session, *, actor: Actor, username: str, password: str, end_tokens: bool = True
) -> None:
    """A new password ends the user's open sessions, and (unless `end_tokens` is false,
    LAB_PASSWORD_CHANGE_ENDS_TOKENS) revokes their tokens. An administrator on the web resets
    only accounts without a clinical role; the operator resets any person's."""
    user = _existing(session, username)
    if holds_any(list(user.roles), MACHINE_ROLES):
        raise InvalidInput.field(
            "password",
            "a machine account has no password: it uses tokens only",
            code="machine_password",
        )
    if (
        not is_operator(actor)
        and user.id != actor.user_id
        and holds_any(list(user.roles), OPERATOR_ROLES)
    ):
        raise PermissionDenied(
            "the password of an account with a clinical role is set by its owner or by the "
            "operator on the server (lab user password USER)",
            code="password_by_operator",
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput.field(
            "password",
            f"must be at least {MIN_PASSWORD_LENGTH} characters",
            code="password_short",
            params={"n": MIN_PASSWORD_LENGTH},
        )
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    ended = end_sessions(session, user)
    revoked = tokens.revoke_all(session, actor=actor, user=user) if end_tokens else 0
    audit.record(
        session,
        actor=actor,
        action="user.set_password",
        entity_type="user",
        entity_id=user.id,
        after={"sessions_ended": ended, "tokens_revoked": revoked},
    )


def sign_in(
    session: Session,
    *,
    username: str,
    password: str,
    timeout: timedelta,
    max_failures: int,
    lockout: timedelta,
) -> SignedIn:
    """Check a password; after `max_failures` wrong ones in a row the account locks for a while."""
    now = utcnow()
    user = get_by_username(session, username)
    if user is None or user.password_hash is None or not user.active:
        _verify_quietly(_DUMMY_HASH, password)
        raise AuthenticationRequired("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        # The same work and the same answer as a wrong password: a lock tells nobody that
        # the name exists.
        _verify_quietly(_DUMMY_HASH, password)
        raise AuthenticationRequired("wrong username or password")
    if not _verify_quietly(user.password_hash, password):
        user.failed_logins += 1
        detail = f"failed sign-in {user.failed_logins}"
        if user.failed_logins >= max_failures:
            user.locked_until = now + lockout
            user.failed_logins = 0
            detail = "locked after repeated failed sign-ins"
        audit.record(
            session,
            actor=actor_for(user, "ui"),
            action="user.sign_in_failed",
            entity_type="user",
            entity_id=user.id,
            detail=detail,
        )
        raise AuthenticationRequired("wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    key = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            key_sha256=sha256_hex(key),
            user_id=user.id,
            csrf_token=csrf,
            last_seen_at=now,
            expires_at=now + timeout,
        )
    )
    audit.record(
        session,
        actor=actor_for(user, "ui"),
        action="user.sign_in",
        entity_type="user",
        entity_id=user.id,
    )
    return SignedIn(user=user, session_key=key, csrf_token=csrf)


# How far a session's idle timeout may lag behind its last request (at most a tenth of the
# timeout; see `user_for_session`).
SLIDE_STEP = timedelta(seconds=30)


def user_for_session(
    session: Session, key: str, *, timeout: timedelta, lifetime: timedelta | None = None
) -> tuple[User, WebSession]:
    """The signed-in user of a browser; the session slides forward while it is used, up to
    `lifetime` after sign-in (the wall screen, which shows no patient data, excepted)."""
    now = utcnow()
    # The session and its user in one question: every page and API call asks it.
    found = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.key_sha256 == sha256_hex(key), WebSession.ended_at.is_(None))
    ).one_or_none()
    if found is None or found[0].expires_at <= now:
        raise AuthenticationRequired("the session has ended; sign in again")
    web, user = found
    if not user.active:
        raise AuthenticationRequired("the user is not active")
    wall_only = list(user.roles) == [Role.DISPLAY.value]
    if lifetime is not None and not wall_only and web.created_at + lifetime <= now:
        web.ended_at = now
        raise AuthenticationRequired("the session has lasted its longest; sign in again")
    # The idle timeout slides in steps of SLIDE_STEP, not on every request: a page read then
    # writes nothing (no UPDATE and no commit to wait for) unless the step has passed.
    step = min(SLIDE_STEP, timeout / 10)
    if now - web.last_seen_at >= step or web.expires_at - now < timeout - step:
        web.last_seen_at = now
        web.expires_at = now + timeout
    return user, web


def sign_out(session: Session, key: str) -> None:
    web = session.scalar(select(WebSession).where(WebSession.key_sha256 == sha256_hex(key)))
    if web is not None and web.ended_at is None:
        web.ended_at = utcnow()


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _verify_quietly(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _existing(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username).with_for_update())
    if user is None:
        raise NotFound(f"no user {username}", code="user_unknown", params={"username": username})
    return user


def end_sessions(session: Session, user: User) -> int:
    """End every open web session of the user (their next click asks them to sign in)."""
    now = utcnow()
    open_sessions = session.scalars(
        select(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    ).all()
    for web in open_sessions:
        web.ended_at = now
    return len(open_sessions)


def set_active(session: Session, *, actor: Actor, username: str, active: bool) -> User:
    """Disable (or enable again) a user: a disabled user cannot sign in or use a token, and
    their open sessions end now. Nobody disables themselves (the last admin stays)."""
    user = _existing(session, username)
    if not active and user.id == actor.user_id:
        raise Conflict("you cannot disable yourself", code="disable_self")
    before = {"active": user.active}
    user.active = active
    ended = 0 if active else end_sessions(session, user)
    revoked = 0 if active else tokens.revoke_all(session, actor=actor, user=user)
    audit.record(
        session,
        actor=actor,
        action="user.enable" if active else "user.disable",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after={"active": active, "sessions_ended": ended, "tokens_revoked": revoked},
    )
    return user


def unlock(session: Session, *, actor: Actor, username: str) -> User:
    """Lift a lockout after failed sign-ins before it runs out."""
    user = _existing(session, username)
    before = {"failed_logins": user.failed_logins, "locked_until": str(user.locked_until or "")}
    user.failed_logins = 0
    user.locked_until = None
    audit.record(
        session,
        actor=actor,
        action="user.unlock",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after={"failed_logins": 0, "locked_until": ""},
    )
    return user


def set_name(
    session: Session, *, actor: Actor, username: str, display_name: str, title: str
) -> User:
    """The user's full name and title, as result reports print the verifier ("Godkjent av")."""
    name, titled = display_name.strip(), title.strip()
    if not name:
        raise InvalidInput.field("display_name", "give the full name", code="name_missing")
    if len(name) > 200 or len(titled) > 100:
        raise InvalidInput.field("title", "the name or title is too long", code="name_too_long")
    user = _existing(session, username)
    before = {"display_name": user.display_name, "title": user.title}
    user.display_name, user.title = name, titled
    audit.record(
        session,
        actor=actor,
        action="user.name",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after={"display_name": name, "title": titled},
    )
    return user


def set_roles(session: Session, *, actor: Actor, username: str, roles: list[str]) -> User:
    """Give the user these roles (and no others); an admin keeps their own admin role. Taking a
    role away is for any administrator; giving a clinical or machine role is for the operator."""
    user = _existing(session, username)
    problems = _role_problems(roles, has_password=user.password_hash is not None)
    if problems:
        raise InvalidInput("the roles cannot be set as given", problems=problems)
    _operator_only(actor, [r for r in roles if r not in user.roles])
    if user.id == actor.user_id and Role.ADMIN in user.roles and Role.ADMIN not in roles:
        raise Conflict("you cannot take your own admin role", code="own_admin_role")
    before = {"roles": list(user.roles)}
    user.roles = sorted(set(roles))
    audit.record(
        session,
        actor=actor,
        action="user.roles",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after={"roles": user.roles},
    )
    return user


ACCOUNT_ACTIONS = ("user.create", "user.roles", "user.disable", "user.enable", "user.set_password")


def account_changes(session: Session, user_id: int, limit: int = 50) -> list[AuditEvent]:
    """The audit rows of changes to one account (role grants above all), newest first: a
    person sees who gave them which role."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.entity_type == "user",
                AuditEvent.entity_id == str(user_id),
                AuditEvent.action.in_(ACCOUNT_ACTIONS),
            )
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )
