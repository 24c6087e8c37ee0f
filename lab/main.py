"""create_app(): routers, the one error mapping, and the lifespan that starts the parts."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from instruments.api import router as instruments_router
from instruments.views import router as analyser_views
from lab import health
from lab.catalog.api import router as catalog_router
from lab.catalog.views import router as catalog_views
from lab.config import Settings, get_settings
from lab.db import make_engine, make_session_factory, runtime_url
from lab.errors import AuthenticationRequired, LabError
from lab.hl7.api import router as hl7_messages_router
from lab.hl7.views import router as hl7_views
from lab.lifespan import Starter
from lab.middleware import BodyLimit, SecurityHeaders
from lab.orders.api import router as orders_router
from lab.orders.entry_views import router as requisition_views
from lab.orders.views import router as orders_views
from lab.patients.api import router as patients_router
from lab.patients.views import router as patients_views
from lab.qc.api import router as qc_router
from lab.qc.views import router as qc_views
from lab.results.api import router as results_router
from lab.results.fix_views import router as fix_views
from lab.results.history_views import router as history_views
from lab.results.views import router as results_views
from lab.rulesets.api import router as rules_router
from lab.rulesets.views import router as rules_views
from lab.specimens.api import router as specimens_router
from lab.specimens.views import router as specimens_views
from lab.turnaround.api import router as reports_router
from lab.users.api import router as users_router
from lab.users.audit_views import router as audit_views
from lab.users.views import router as users_views
from lab.web.auth import router as auth_views
from lab.web.overview import router as overview_views
from lab.web.pages import SignInNeeded, answer_for_page, is_page, sign_in_redirect, wants_page
from lab.web.templating import STATIC_DIR, render

log = logging.getLogger(__name__)


def _freeze_what_lives_long() -> None:
    """What exists once the app has started (modules, routes, the parts' state) lives as long
    as the process: frozen, Python's full garbage collections no longer walk it. Unfrozen, those
    ~300,000 objects made every few page requests wait for a full collection, up to a second on
    a busy machine (bench/bench_web.py). Once per process: a test run makes many apps.

    The collector's thresholds are raised too (`GC_THRESHOLDS`): at Python's default (a young
    collection every 700 new objects) each message's own objects, still alive in the middle of
    its transaction, were moved to the old generations and made full collections every few
    seconds during an order burst, 40-80 ms each (load 7), a stall for every message waiting."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


#: Young collection every 50,000 new objects (tens of messages), the middle one every 20 of
#: those, a full one every 100 middle ones: what one message makes dies young.
GC_THRESHOLDS = (50_000, 20, 100)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
    starters: list[Starter] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    if engine is None:
        engine = make_engine(runtime_url(settings))
    factory = session_factory or make_session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started: list[AbstractAsyncContextManager[None]] = []
        try:
            for starter in starters or []:
                part = starter(app)
                await part.__aenter__()
                started.append(part)
            _freeze_what_lives_long()
            yield
        finally:
            for part in reversed(started):
                await part.__aexit__(None, None, None)

    app = FastAPI(
        title="Lab module (LIS)",
        version="0.1.0",
        description="Orders, specimens and results of the regional health record's laboratories.",
        lifespan=lifespan,
        docs_url=None,  # served below from the packaged Swagger UI, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = factory
    app.state.components = health.Components()

    for router in (
        health.router,
        users_router,
        patients_router,
        catalog_router,
        orders_router,
        specimens_router,
        results_router,
    ):
        app.include_router(router)
    app.include_router(hl7_messages_router)
    app.include_router(instruments_router)
    app.include_router(reports_router)
    app.include_router(qc_router)
    app.include_router(rules_router)
    _include_pages(app)

    _add_docs(app)
    app.add_middleware(BodyLimit, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: the 413 gets the headers too

    app.add_exception_handler(LabError, _lab_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _unstorable_value)
    return app


_DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lab module (LIS) - API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


def _add_docs(app: FastAPI) -> None:
    """/docs from the `swagger-ui-bundle` package: works on a hospital network without internet."""
    import swagger_ui_bundle  # type: ignore[import-untyped]
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(
        "/docs-assets",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_PAGE)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    """422, not 500, for a value PostgreSQL refuses to take (a NUL byte in text, say): it came
    with the request (found by tests/test_hostile_input.py)."""
    body = {
        "error": "InvalidInput",
        "message": "the request holds a value that cannot be stored (e.g. a NUL character)",
        "problems": [],
    }
    return JSONResponse(body, status_code=422)


async def _lab_error(request: Request, exc: Exception) -> Response:
    """The one mapping of the project's errors to answers: a page for a page, JSON otherwise.

    The error reaches this handler after the session dependency rolled back the route's work.
    """
    assert isinstance(exc, LabError)
    if is_page(request):
        return answer_for_page(request, exc)
    body: dict[str, object] = {
        "error": type(exc).__name__,
        "message": exc.message,
        "problems": [
            {"field": p.field, "message": p.message, **({"code": p.code} if p.code else {})}
            for p in exc.problems
        ],
    }
    if exc.code:
        body["code"] = exc.code
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationRequired) else None
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one line per field: where it is, and what is wrong with it."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": ".".join(str(part) for part in error["loc"] if part != "body"),
            "message": error["msg"],
        }
        for error in exc.errors()
    ]
    body = {
        "error": "InvalidInput",
        "message": "the request has invalid fields",
        "problems": problems,
    }
    return JSONResponse(body, status_code=422)


def _include_pages(app: FastAPI) -> None:
    """Mount the pages and their static files on the app (after the JSON routers)."""
    for router in (
        auth_views,
        overview_views,
        specimens_views,
        orders_views,
        results_views,
        fix_views,
        history_views,
        users_views,
        qc_views,
        rules_views,
        catalog_views,
        hl7_views,
        analyser_views,
        audit_views,
        patients_views,
        requisition_views,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def _sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        return sign_in_redirect(request, exc)

    # Page routes turn this into a redirect themselves; this covers any other route using
    # `CurrentUserPage`.
    app.add_exception_handler(SignInNeeded, _sign_in)

    async def _no_such_page(request: Request, exc: Exception) -> Response:
        """An unknown address (or a wrong method) typed in a browser gets a page in the
        reader's language; the API and scripts keep their JSON answer."""
        assert isinstance(exc, StarletteHTTPException)
        if not wants_page(request) or exc.status_code not in (404, 405):
            return await http_exception_handler(request, exc)
        key = "error.page_not_found" if exc.status_code == 404 else "error.method_not_allowed"
        title = "error.not_found" if exc.status_code == 404 else "error.refused"
        return render(
            request,
            "error.html",
            {"title_key": title, "message_key": key, "message": "", "problems": []},
            status_code=exc.status_code,
        )

    app.add_exception_handler(StarletteHTTPException, _no_such_page)
