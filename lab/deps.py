"""Request dependencies shared by every router: the database session and who is asking.

`Annotated` aliases keep route signatures short. Every route but `/healthz` and the
sign-in page depends on `CurrentActor` or `require(...)`, so nothing is reachable unauthenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.errors import AuthenticationRequired, PermissionDenied
from lab.users import service as users
from lab.users import tokens
from lab.users.roles import Permission

SESSION_COOKIE = "lab_session"


def get_session(request: Request) -> Iterator[Session]:
    """The one place where a request's transaction ends.

    A route that returns an answer has its work committed; one that raises (a `LabError` the
    one handler in `lab.main` maps to 4xx, or a bug) has it rolled back. Routes never commit.
    The dependency is function-scoped, so the commit happens before the answer is sent: a
    commit that fails is the client's error answer, never a success the database lost.
    """
    factory = request.app.state.session_factory
    with factory() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def current_actor(request: Request, session: SessionDep) -> Actor:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired("use 'Authorization: Bearer <token>'")
        user, row = tokens.user_for_token(session, token.strip())
        actor = users.actor_for(user, "api", via=f"token:{row.id}")
    else:
        key = request.cookies.get(SESSION_COOKIE)
        if not key:
            raise AuthenticationRequired("sign in, or send an API token")
        timeout = timedelta(minutes=settings.session_timeout_minutes)
        lifetime = timedelta(hours=settings.session_max_hours)
        try:
            user, web = users.user_for_session(session, key, timeout=timeout, lifetime=lifetime)
        except AuthenticationRequired:
            session.commit()  # a session ended for its age stays ended
            raise
        request.state.csrf_token = web.csrf_token
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        # A cookie rides along on any cross-site request; the token in a header does not.
        api_call = request.url.path.startswith("/api/")
        if unsafe and api_call and request.headers.get("x-csrf-token") != web.csrf_token:
            raise PermissionDenied("missing or wrong X-CSRF-Token header")
        actor = users.actor_for(user, "ui", via=f"session:{web.id}")
    # Token and web-session bookkeeping (last use, expiry) is kept even if the route then
    # fails and its own work is rolled back: this is the only commit outside `get_session`.
    session.commit()
    request.state.actor = actor
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(permission: Permission) -> Callable[[Actor], Actor]:
    """A dependency that lets the request through only for roles that hold `permission`."""

    def check(actor: CurrentActor) -> Actor:
        users.require(actor, permission)
        return actor

    check.__name__ = f"require_{permission.value}"
    return check


ReadPatientData = Annotated[Actor, Depends(require(Permission.READ_PATIENT_DATA))]
ManagePatients = Annotated[Actor, Depends(require(Permission.MANAGE_PATIENTS))]
MergePatients = Annotated[Actor, Depends(require(Permission.MERGE_PATIENTS))]
PlaceOrders = Annotated[Actor, Depends(require(Permission.PLACE_ORDERS))]
CancelOrders = Annotated[Actor, Depends(require(Permission.CANCEL_ORDERS))]
HandleSpecimens = Annotated[Actor, Depends(require(Permission.HANDLE_SPECIMENS))]
EnterResults = Annotated[Actor, Depends(require(Permission.ENTER_RESULTS))]
VerifyResults = Annotated[Actor, Depends(require(Permission.VERIFY_RESULTS))]
CorrectResults = Annotated[Actor, Depends(require(Permission.CORRECT_RESULTS))]
ReadAudit = Annotated[Actor, Depends(require(Permission.READ_AUDIT))]
ReadCatalog = Annotated[Actor, Depends(require(Permission.READ_CATALOG))]
ManageCatalog = Annotated[Actor, Depends(require(Permission.MANAGE_CATALOG))]
ManageUsers = Annotated[Actor, Depends(require(Permission.MANAGE_USERS))]
ViewAnalysers = Annotated[Actor, Depends(require(Permission.VIEW_ANALYSERS))]
ReadWorklist = Annotated[Actor, Depends(require(Permission.READ_WORKLIST))]
ResolveUnmatched = Annotated[Actor, Depends(require(Permission.RESOLVE_UNMATCHED))]
EnterQc = Annotated[Actor, Depends(require(Permission.ENTER_QC))]
ManageQc = Annotated[Actor, Depends(require(Permission.MANAGE_QC))]
OverrideQcLock = Annotated[Actor, Depends(require(Permission.OVERRIDE_QC_LOCK))]
