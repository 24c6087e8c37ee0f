"""What every HTML route shares: errors as pages, sign-in redirects, flash notices, safe `next`.

The JSON API answers errors with JSON (lab/main.py); a person in a browser gets a page in
their language instead. `PageRoute` does that translation for every route of a page router,
including errors raised by dependencies (no session: to the sign-in page; wrong role: 403).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from lab.errors import AuthenticationRequired, LabError, NotFound, PermissionDenied
from lab.web.templating import render

# Notices shown once after a redirect (post/redirect/get): the key travels in `?done=`.
NOTICES = frozenset(
    {
        "received",
        "rejected",
        "verified",
        "verified_many",
        "verified_none",
        "corrected",
        "measurement_chosen",
        "measurements_reviewed",
        "results_saved",
        "test_added",
        "tests_cancelled",
        "signed_out",
    }
)


class SignInNeeded(Exception):
    """No valid web session: the browser is sent to the sign-in page, then back."""

    def __init__(self, next_path: str, *, expired: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


def safe_next(path: str | None) -> str:
    """Only a path on this site: `//evil.example` or `https://...` would be an open redirect."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def sign_in_redirect(request: Request, exc: SignInNeeded) -> Response:
    query = {"next": exc.next_path}
    if exc.expired:
        query["expired"] = "1"
    return RedirectResponse(f"/login?{urlencode(query)}", status_code=303)


def error_page(request: Request, exc: LabError) -> Response:
    if isinstance(exc, PermissionDenied):
        title = "error.forbidden"
    elif isinstance(exc, NotFound):
        title = "error.not_found"
    else:
        title = "error.refused"
    return render(
        request,
        "error.html",
        {"title_key": title, "message": exc.message, "problems": exc.problems},
        status_code=exc.http_status,
    )


def redirect_after_post(path: str, notice: str | None = None, **query: str) -> RedirectResponse:
    """303 See Other, so a reload of the next page does not send the form again."""
    if notice is not None and notice in NOTICES:
        query = {"done": notice, **query}
    target = path + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(target, status_code=303)


def notice_of(request: Request) -> str | None:
    done = request.query_params.get("done")
    return done if done in NOTICES else None


async def posted_form(request: Request) -> FormData:
    """The whole form, for forms whose field names depend on the data (one per test)."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


class PageRoute(APIRoute):
    """A route whose errors become pages instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded as exc:
                return sign_in_redirect(request, exc)
            except AuthenticationRequired:
                return sign_in_redirect(
                    request, SignInNeeded(quote(request.url.path), expired=False)
                )
            except LabError as exc:
                return error_page(request, exc)

        return page_handler


def page_router() -> APIRouter:
    """Pages are not part of the API: kept out of OpenAPI and its auth walk."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)
