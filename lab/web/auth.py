"""Sign-in and sign-out pages, the page dependencies, and the CSRF check of every form.

A page needs a web session (`CurrentUserPage`): without one the browser is sent to /login and
back afterwards. Every POST form carries the session's CSRF token in a hidden field
(`csrf_token`); a form without it, or with another session's token, is refused with 403.
The sign-in form has no session yet, so it carries a token that must match a cookie
(double submit), which stops another site from signing a browser in as someone else.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
from fastapi import Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session, sessionmaker

from lab.audit import Actor
from lab.config import Settings
from lab.db import transaction
from lab.deps import SESSION_COOKIE, SessionDep, current_actor
from lab.errors import AuthenticationRequired, PermissionDenied
from lab.users import service as users
from lab.users.roles import MACHINE_ROLES, Permission, holds_only
from lab.users.throttle import LoginGuard
from lab.web.pages import SignInNeeded, page_router, redirect_after_post, safe_next
from lab.web.templating import render

LOGIN_CSRF_COOKIE = "lab_login_csrf"
CSRF_FIELD = "csrf_token"

router = page_router()


def _path_to_return_to(request: Request) -> str:
    """The page to come back to after signing in: this one, or the form's page for a POST."""
    if request.method == "GET":
        query = f"?{request.url.query}" if request.url.query else ""
        return safe_next(request.url.path + query)
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc:
        return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
    return "/"


def current_user_page(request: Request, session: SessionDep) -> Actor:
    """The signed-in person; without a valid session, a redirect to the sign-in page. Pages
    are for people: a machine account (analyser, interface) that sends its token gets 403."""
    try:
        actor = current_actor(request, session)
    except AuthenticationRequired as exc:
        # A cookie that no longer works means the session timed out (or was signed out).
        expired = SESSION_COOKIE in request.cookies
        raise SignInNeeded(_path_to_return_to(request), expired=expired) from exc
    if actor.roles and holds_only(list(actor.roles), MACHINE_ROLES):
        raise PermissionDenied("pages are for people; a machine account uses the API")
    return actor


CurrentUserPage = Annotated[Actor, Depends(current_user_page)]


async def form_user(request: Request, actor: CurrentUserPage) -> Actor:
    """The signed-in person, for a POST whose form carried this session's CSRF token."""
    if actor.channel == "api":
        return actor  # a bearer token is never sent by a browser on its own: no CSRF risk
    expected = getattr(request.state, "csrf_token", None)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        raise PermissionDenied(
            "the form was not sent from this page; reload the page and retry", code="form_stale"
        )
    return actor


FormUser = Annotated[Actor, Depends(form_user)]


def page_requires(permission: Permission) -> Callable[[Actor], Actor]:
    def check(actor: CurrentUserPage) -> Actor:
        users.require(actor, permission)
        return actor

    check.__name__ = f"page_requires_{permission.value}"
    return check


def form_requires(permission: Permission) -> Callable[[Actor], Coroutine[Any, Any, Actor]]:
    async def check(actor: FormUser) -> Actor:
        users.require(actor, permission)
        return actor

    check.__name__ = f"form_requires_{permission.value}"
    return check


P = Permission
ReadPatientDataPage = Annotated[Actor, Depends(page_requires(P.READ_PATIENT_DATA))]
ReadPatientDataForm = Annotated[Actor, Depends(form_requires(P.READ_PATIENT_DATA))]
EnterResultsPage = Annotated[Actor, Depends(page_requires(P.ENTER_RESULTS))]
VerifyResultsPage = Annotated[Actor, Depends(page_requires(P.VERIFY_RESULTS))]
ManageUsersPage = Annotated[Actor, Depends(page_requires(P.MANAGE_USERS))]
HandleSpecimensForm = Annotated[Actor, Depends(form_requires(P.HANDLE_SPECIMENS))]
EnterResultsForm = Annotated[Actor, Depends(form_requires(P.ENTER_RESULTS))]
VerifyResultsForm = Annotated[Actor, Depends(form_requires(P.VERIFY_RESULTS))]
CorrectResultsForm = Annotated[Actor, Depends(form_requires(P.CORRECT_RESULTS))]
PlaceOrdersForm = Annotated[Actor, Depends(form_requires(P.PLACE_ORDERS))]
CancelOrdersForm = Annotated[Actor, Depends(form_requires(P.CANCEL_ORDERS))]
HandleSpecimensPage = Annotated[Actor, Depends(page_requires(P.HANDLE_SPECIMENS))]


def _login_page(
    request: Request,
    *,
    username: str = "",
    next_path: str = "/",
    error_key: str | None = None,
    status_code: int = 200,
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "auth/login.html",
        {
            "username": username,
            "next_path": safe_next(next_path),
            "error_key": error_key,
            "login_token": token,
            "expired": request.query_params.get("expired") == "1",
            "signed_out": request.query_params.get("done") == "signed_out",
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
def login_page(request: Request, next_path: Annotated[str, Query(alias="next")] = "/") -> Response:
    return _login_page(request, next_path=next_path)


def _login_guard(request: Request) -> LoginGuard:
    guard: LoginGuard | None = getattr(request.app.state, "login_guard", None)
    if guard is None:
        settings = request.app.state.settings
        guard = LoginGuard(
            per_address=settings.login_rate_per_address,
            per_account=settings.login_rate_per_account,
            workers=settings.login_hash_workers,
            queue=settings.login_hash_queue,
        )
        request.app.state.login_guard = guard
    return guard


def _check_password(
    factory: sessionmaker[Session], settings: Settings, username: str, password: str
) -> users.SignedIn | None:
    """The password check and its bookkeeping (failures, lockout, audit) in one transaction,
    on one of the sign-in threads; None for any refusal (wrong, unknown, locked, disabled)."""
    with transaction(factory) as session:
        try:
            return users.sign_in(
                session,
                username=username,
                password=password,
                timeout=timedelta(minutes=settings.session_timeout_minutes),
                max_failures=settings.max_failed_logins,
                lockout=timedelta(minutes=settings.lockout_minutes),
            )
        except AuthenticationRequired:
            return None


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "/",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Sign in. Refused before any password work: a stale form, an address or a name over its
    rate (429), or every password-checking place taken (503); see lab/users/throttle.py."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token, expected):
        return _login_page(
            request,
            username=username,
            next_path=next_path,
            error_key="login.stale",
            status_code=403,
        )
    if not username.strip() or not password:
        return _login_page(
            request,
            username=username,
            next_path=next_path,
            error_key="login.missing",
            status_code=400,
        )
    guard = _login_guard(request)
    address = request.client.host if request.client else "-"
    if not guard.allow(address, username):
        refused = _login_page(
            request,
            username=username,
            next_path=next_path,
            error_key="login.too_many",
            status_code=429,
        )
        refused.headers["Retry-After"] = "60"
        return refused
    if not guard.enter():
        busy = _login_page(
            request,
            username=username,
            next_path=next_path,
            error_key="login.busy",
            status_code=503,
        )
        busy.headers["Retry-After"] = "2"
        return busy
    try:
        signed_in = await anyio.to_thread.run_sync(
            partial(
                _check_password,
                request.app.state.session_factory,
                request.app.state.settings,
                username.strip(),
                password,
            ),
            limiter=guard.limiter(),
        )
    finally:
        guard.leave()
    if signed_in is None:
        # One answer for a wrong password, an unknown name, a locked or a disabled account.
        return _login_page(
            request,
            username=username,
            next_path=next_path,
            error_key="login.wrong",
            status_code=400,
        )
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.session_key,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, actor: FormUser) -> Response:
    key = request.cookies.get(SESSION_COOKIE)
    if key:
        users.sign_out(session, key)
    response = redirect_after_post("/login", "signed_out")
    response.delete_cookie(SESSION_COOKIE)
    return response
