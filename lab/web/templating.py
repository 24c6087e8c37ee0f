"""The Jinja2 environment of the web pages: autoescaped, Norwegian formats, `t()` for text.

One template per page; a partial update renders one named block of the same template
(`render_block`), so the page and its fragment can never drift apart (docs/architecture.md,
"Pages").
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from lab.timeutil import OSLO, oslo_text
from lab.users.roles import Permission, permissions_of
from lab.web.i18n import LANGUAGES, Language, translate

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
STATIC_DIR = Path(__file__).with_name("static")
LANGUAGE_COOKIE = "lab_lang"


def when(moment: datetime | None) -> str:
    """`27.11.2026 08:15` in Europe/Oslo, whatever zone the time was stored in."""
    return oslo_text(moment)


def clock(timestamp: float) -> str:
    """A scan's time of day, `08:15:02` in Europe/Oslo."""
    return datetime.fromtimestamp(timestamp, tz=OSLO).strftime("%H:%M:%S")


def day(value: date | None) -> str:
    return value.strftime("%d.%m.%Y") if value is not None else ""


def number(value: Decimal | int | float | None) -> str:
    """Decimal comma, and no exponent: `Decimal("1E+1")` is shown as `10`."""
    if value is None:
        return ""
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    if text.startswith("-"):
        return "\u2212" + text[1:].replace(".", ",")  # a real minus sign reads better
    return text.replace(".", ",")


def signed_number(value: Decimal | None) -> str:
    if value is None:
        return ""
    return ("+" if value > 0 else "") + number(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["clock"] = clock
    env.filters["number"] = number
    env.filters["signed"] = signed_number
    return env


environment = _environment()


def language_of(request: Request) -> Language:
    """`?lang=en` wins (and is remembered in a cookie), then the cookie, then bokmål."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return "nb"


def page_context(request: Request, context: dict[str, Any]) -> dict[str, Any]:
    language = language_of(request)
    actor = getattr(request.state, "actor", None)
    granted = permissions_of(list(actor.roles)) if actor is not None else frozenset()

    def t(key: str, **values: object) -> str:
        return translate(language, key, **values)

    def may(permission: str) -> bool:
        return Permission(permission) in granted

    components = request.app.state.components.report() if actor is not None else {}
    base: dict[str, Any] = {
        "request": request,
        "lang": language,
        "t": t,
        "may": may,
        "actor": actor,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "components": components,
        "lab_name": request.app.state.settings.lab_name,
        "path": request.url.path,
    }
    base.update(context)
    return base


def _response(request: Request, body: str, status_code: int) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status_code)
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES and chosen != request.cookies.get(LANGUAGE_COOKIE):
        response.set_cookie(
            LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="lax"
        )
    # Pages carry patient data: never keep them in a shared cache or the back-button cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    body = environment.get_template(template).render(page_context(request, context or {}))
    return _response(request, body, status_code)


def render_block(
    request: Request,
    template: str,
    block: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """One named block of a page, for a partial update by the page's own script."""
    compiled = environment.get_template(template)
    render_fn = compiled.blocks[block]
    jinja_context = compiled.new_context(page_context(request, context or {}))
    body = "".join(render_fn(jinja_context))
    return _response(request, body, status_code)
