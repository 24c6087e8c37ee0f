"""What every HTML route shares: errors as pages, sign-in redirects, flash notices, safe `next`.

The JSON API answers errors with JSON (lab/main.py); a person in a browser gets a page in
their language instead. The one error handler (`lab.main`) gives every route of a page router
(`PageRoute`) a page, including for errors raised by dependencies (no session: to the sign-in
page; wrong role: 403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from lab.errors import AuthenticationRequired, FieldProblem, LabError, NotFound, PermissionDenied
from lab.web.i18n import translate
from lab.web.templating import error_text, language_of, problem_text, render, render_block

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
        "result_replaced",
        "rerun_requested",
        "result_discarded",
        "results_saved",
        "test_added",
        "tests_cancelled",
        "signed_out",
        "resent",
        "unmatched_resolved",
        "unmatched_discarded",
        "user_added",
        "password_set",
        "user_enabled",
        "user_disabled",
        "user_unlocked",
        "token_revoked",
        "roles_set",
        "name_set",
        "order_placed",
    }
)


class SignInNeeded(Exception):
    """No valid web session: the browser is sent to the sign-in page, then back."""

    def __init__(self, next_path: str, *, expired: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


# Paths that belong to machines: they keep JSON answers for every error.
MACHINE_PATHS = ("/api/", "/healthz", "/openapi.json", "/docs", "/redoc", "/static/")


def wants_page(request: Request) -> bool:
    """A person's browser asking for a page (not the API, not a script asking for JSON)."""
    if request.url.path.startswith(MACHINE_PATHS):
        return False
    return "text/html" in request.headers.get("accept", "")


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
    language = language_of(request)
    problems = [
        {"field": p.field, "message": problem_text(language, p)}
        for p in exc.problems
        if exc.code or len(exc.problems) > 1  # one problem is already the message
    ]
    return render(
        request,
        "error.html",
        {"title_key": title, "message": error_text(language, exc), "problems": problems},
        status_code=exc.http_status,
    )


def error_message(request: Request, exc: LabError) -> str:
    """The error in the page's language (from its code), for a form shown again."""
    return error_text(language_of(request), exc)


def problem_fields(
    request: Request, problems: list[FieldProblem], form_fields: dict[str, str]
) -> dict[str, str]:
    """Problems by the form's field names (the first one per field), in the page's language;
    a problem whose field the form does not have goes to `_form`, so none is lost."""
    language = language_of(request)
    shown: dict[str, str] = {}
    for problem in problems:
        field = form_fields.get(problem.field, problem.field)
        if field.startswith("tests["):
            field = "tests"
        text = problem_text(language, problem)
        if field in shown:
            if text not in shown[field]:
                shown[field] += " " + text
        else:
            shown[field] = text
    return shown


def field_errors(request: Request, exc: LabError) -> dict[str, str]:
    """The error's problems by field, in the page's language; `_form` when none names one."""
    language = language_of(request)
    found = {p.field: problem_text(language, p) for p in exc.problems}
    return found or {"_form": error_text(language, exc)}


def redirect_after_post(path: str, notice: str | None = None, **query: str) -> RedirectResponse:
    """303 See Other, so a reload of the next page does not send the form again."""
    if notice is not None and notice in NOTICES:
        query = {"done": notice, **query}
    target = path + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(target, status_code=303)


def notice_text(request: Request, notice: str, **values: object) -> str:
    """A notice in the page's language, for a partial update that shows it without a reload."""
    return translate(language_of(request), f"notice.{notice}", **values)


def notice_of(request: Request) -> str | None:
    done = request.query_params.get("done")
    return done if done in NOTICES else None


async def posted_form(request: Request) -> FormData:
    """The whole form, for forms whose field names depend on the data (one per test)."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


class PageRoute(APIRoute):
    """A route whose errors become pages instead of JSON (see `answer_for_page`)."""


def is_page(request: Request) -> bool:
    """Whether the request was routed to a page (its errors are answered with a page)."""
    return isinstance(request.scope.get("route"), PageRoute)


def answer_for_page(request: Request, exc: LabError) -> Response:
    """A page's answer to an error, given by the one error handler (`lab.main`).

    The error has passed through the session dependency on its way there, so whatever the
    route had changed is rolled back; no sign-in: to the sign-in page; wrong role: 403.
    """
    if isinstance(exc, AuthenticationRequired):
        return sign_in_redirect(request, SignInNeeded(quote(request.url.path), expired=False))
    return error_page(request, exc)


def show_form_again(
    request: Request,
    session: Session,
    *,
    template: str,
    read: Callable[[], dict[str, Any]],
    status_code: int,
    block: str | None = None,
    **shown: Any,
) -> Response:
    """A refused form, shown again with its errors next to the fields and the input kept.

    Nothing of the refused change is kept: it is rolled back here. The page is then read
    afresh by `read` (what is stored now, not what the refused change left in the session),
    and the audit rows of that read are committed with the answer by the session dependency.
    `shown` goes into the page as it is (the errors and the values typed).
    """
    session.rollback()
    context = read()
    context.update(notice=None)
    context.update(shown)
    if block is not None:
        return render_block(request, template, block, context, status_code=status_code)
    return render(request, template, context, status_code=status_code)


def page_router() -> APIRouter:
    """Pages are not part of the API: kept out of OpenAPI and its auth walk."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)
