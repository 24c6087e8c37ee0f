"""The lab technicians' web UI: server-rendered pages on top of the same services as the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from lab.web.pages import SignInNeeded, sign_in_redirect

STATIC_DIR = Path(__file__).with_name("static")


def include_views(app: FastAPI) -> None:
    """Mount the pages and their static files on the app (after the JSON routers)."""
    from lab.orders.views import router as orders_views
    from lab.results.views import router as results_views
    from lab.specimens.views import router as specimens_views
    from lab.users.views import router as users_views
    from lab.web.auth import router as auth_views
    from lab.web.overview import router as overview_views

    for router in (
        auth_views,
        overview_views,
        specimens_views,
        orders_views,
        results_views,
        users_views,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def _sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        return sign_in_redirect(request, exc)

    # Page routes turn this into a redirect themselves; this covers any other route using
    # `CurrentUserPage`.
    app.add_exception_handler(SignInNeeded, _sign_in)
