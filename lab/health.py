"""What `GET /healthz` reports: the database and every component that is running.

Listeners, analyser connections and the dispatcher register a status callback in the
`Components` of the app; each returns a small dict with at least `state`.

Anyone may ask (a load balancer does), so without a signed-in session or token the answer holds
only states, counts and alarms (`PUBLIC_FIELDS`): no addresses, versions, receiver URLs or error
texts, which would map the hospital network for a stranger. Signed in, it holds everything.
A component with an alarm (a refused analyser connection, a full archive) makes it `degraded`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from lab.db import ping
from lab.errors import LabError

router = APIRouter(tags=["health"])

StatusCallback = Callable[[], dict[str, Any]]
GroupCallback = Callable[[], dict[str, dict[str, Any]]]

#: What a caller who is not signed in sees of each component.
PUBLIC_FIELDS = frozenset(
    {
        "state",
        "line",
        "connections",
        "messages",
        "duplicates",
        "refused",
        "queued",
        "in_flight",
        "dead",
        "errors",
        "unmatched",
        "alarm",
        "tls",
        "client_certificates",
        "last_message_at",
        "last_delivery_at",
    }
)


def _signed_in(request: Request) -> bool:
    """True for a request with a valid session cookie or bearer token (never raises)."""
    from lab.deps import SESSION_COOKIE, current_actor

    if not request.headers.get("authorization") and SESSION_COOKIE not in request.cookies:
        return False
    try:
        with request.app.state.session_factory() as session:
            current_actor(request, session)
    except (LabError, SQLAlchemyError):
        return False
    return True


class Components:
    def __init__(self) -> None:
        self._callbacks: dict[str, StatusCallback] = {}
        self._groups: dict[str, GroupCallback] = {}

    def register(self, name: str, callback: StatusCallback) -> None:
        self._callbacks[name] = callback

    def unregister(self, name: str) -> None:
        self._callbacks.pop(name, None)

    def register_group(self, name: str, callback: GroupCallback) -> None:
        """Several components reported by one callback (the intake workers' own components)."""
        self._groups[name] = callback

    def unregister_group(self, name: str) -> None:
        self._groups.pop(name, None)

    def report(self) -> dict[str, dict[str, Any]]:
        report: dict[str, dict[str, Any]] = {}
        for name, group in sorted(self._groups.items()):
            try:
                report.update(group())
            except Exception as exc:  # as below: one broken report must not hide the others
                report[name] = {"state": "error", "error": type(exc).__name__}
        for name, callback in sorted(self._callbacks.items()):
            try:
                report[name] = callback()
            except Exception as exc:  # a broken status callback must not hide the others
                report[name] = {"state": "error", "error": type(exc).__name__}
        return report


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """No authentication: says only whether the parts run, never any patient data."""
    engine = request.app.state.engine
    try:
        database: dict[str, Any] = {"state": "up", "server_version": ping(engine)}
    except SQLAlchemyError as exc:
        database = {"state": "down", "error": type(exc).__name__}
    components = request.app.state.components.report()
    healthy = database["state"] == "up" and all(
        c.get("state") not in ("error", "down") and not c.get("alarm") for c in components.values()
    )
    if not _signed_in(request):
        database = {"state": database["state"]}
        components = {
            name: {key: value for key, value in part.items() if key in PUBLIC_FIELDS}
            for name, part in components.items()
        }
    body = {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "components": components,
    }
    return JSONResponse(body, status_code=200 if database["state"] == "up" else 503)
