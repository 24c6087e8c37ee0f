"""The Jinja2 environment of the web pages: autoescaped, Norwegian formats, `t()` for text.

`t(key, **values)` is the page's text in its one language, from the gettext catalogs
(lab/web/i18n.py); `tn(key, count)` the same with singular and plural. Numbers are formatted by
Babel for the page's language (bokmål: decimal comma and a real minus sign).

One template per page; a partial update renders one named block of the same template
(`render_block`), so the page and its fragment can never drift apart (docs/architecture.md,
"Pages").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from lab.errors import FieldProblem, LabError
from lab.reports.formatting import display_clinician, display_unit
from lab.timeutil import OSLO, oslo_text
from lab.users.roles import Permission, permissions_of
from lab.web.hold_text import delta_limit, hold_detail, version_reason, who
from lab.web.i18n import LANGUAGES, Language, has_text, translate, translate_plural
from lab.web.numbers import number, signed_number
from lab.web.status_strip import StripLine, strip_lines

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


@pass_context
def _number_filter(context: Context, value: Decimal | int | float | None) -> str:
    return number(value, context.get("lang", "nb"))


@pass_context
def _decimal_text_filter(context: Context, text: str | None) -> str:
    """A value kept as text (`9.9`, `<5`) in the page's number format; other text as it is."""
    raw = (text or "").strip()
    comparator = raw[: len(raw) - len(raw.lstrip("<>="))]
    try:
        return comparator + number(Decimal(raw[len(comparator) :]), context.get("lang", "nb"))
    except ArithmeticError:
        return raw


@pass_context
def _hold_text_filter(context: Context, hold: Mapping[str, Any]) -> str:
    return hold_detail(hold, context.get("lang", "nb"))


@pass_context
def _delta_limit_filter(context: Context, delta: Mapping[str, Any]) -> str:
    return delta_limit(delta or {}, context.get("lang", "nb"))


@pass_context
def _version_reason_filter(context: Context, text: str) -> str:
    return version_reason(text or "", context.get("lang", "nb"))


@pass_context
def _who_filter(context: Context, name: str | None) -> str:
    return who(name or "", context.get("lang", "nb"))


def unmatched_reason(language: Language, code: str, params: Mapping[str, Any]) -> str | None:
    """Why an analyser's result is unmatched, from the code and parameters stored with it
    (`unmatched.why.<code>` or, for the result path's refusals, `error.<code>`); None when
    no catalog knows the code."""
    if not code:
        return None
    if has_text(language, f"unmatched.why.{code}"):
        shown = {name: _shown(language, name, value) for name, value in params.items()}
        return translate(language, f"unmatched.why.{code}", **shown)
    return coded_text(language, code, params)


@pass_context
def _unmatched_reason_filter(context: Context, row: Any) -> str:
    """The row's reason in the page's language, or its English sentence."""
    said = unmatched_reason(context.get("lang", "nb"), row.reason_code, row.reason_params or {})
    return said if said is not None else row.reason or ""


@pass_context
def _unmatched_known(context: Context, row: Any) -> bool:
    return (
        unmatched_reason(context.get("lang", "nb"), row.reason_code, row.reason_params or {})
        is not None
    )


@pass_context
def _signed_filter(context: Context, value: Decimal | None) -> str:
    return signed_number(value, context.get("lang", "nb"))


# Parameters that name a status are shown with the status's own word (`status.<value>`).
_STATUS_PARAMS = frozenset({"status", "target"})


def _shown(language: Language, name: str, value: object) -> object:
    if isinstance(value, datetime):
        return oslo_text(value)
    if isinstance(value, Decimal):
        return number(value, language)
    if name in _STATUS_PARAMS and has_text(language, f"status.{value}"):
        return translate(language, f"status.{value}")
    if name == "why" and has_text(language, f"value_check.{value}"):
        return translate(language, f"value_check.{value}")
    if name == "permission" and has_text(language, f"permission.{value}"):
        return translate(language, f"permission.{value}")
    return value


def coded_text(language: Language, code: str, params: Mapping[str, object]) -> str | None:
    """The text of `error.<code>` with its parameters, or None when no catalog has it."""
    if not has_text(language, f"error.{code}"):
        return None
    shown = {name: _shown(language, name, value) for name, value in params.items()}
    return translate(language, f"error.{code}", **shown)


# The critical-call record as the results service writes it (CriticalNotification.text()).
_CALL = re.compile(r"^told (?P<person>.*) at (?P<at>\S+), read back: (?P<read_back>yes|no)$")


@pass_context
def _critical_call_filter(context: Context, record: str) -> str:
    """`told X at <UTC ISO>, read back: yes` shown in the page's words and Oslo time."""
    found = _CALL.match(record or "")
    if found is None:
        return record or ""
    language: Language = context.get("lang", "nb")
    try:
        at = oslo_text(datetime.fromisoformat(found["at"]))
    except ValueError:
        at = found["at"]
    return translate(
        language,
        "result.call_record",
        person=found["person"],
        at=at,
        read_back=translate(language, found["read_back"]),
    )


@pass_context
def _unit_filter(context: Context, ucum: str | None) -> str:
    return display_unit(ucum, context.get("lang", "nb"))


def analyser_flags(text: str | None) -> str:
    """The analyser's own flags worth a look: `N` (normal, LIS2-A2 R-7) is not a warning."""
    flags = (text or "").replace(",", " ").split()
    return " ".join(flag for flag in flags if flag.upper() != "N")


@pass_context
def _event_detail_filter(context: Context, detail: str) -> str:
    from lab.web.timeline_text import event_detail

    return event_detail(detail or "", context.get("lang", "nb"))


def _iso_when(text: str | None) -> str:
    """An ISO time from a status report, in Oslo time like every other time on the pages."""
    if not text:
        return ""
    try:
        return oslo_text(datetime.fromisoformat(text))
    except ValueError:
        return text


def problem_text(language: Language, problem: FieldProblem) -> str:
    """A field problem in the reader's language: its code's text, or the service's words."""
    if problem.code:
        return coded_text(language, problem.code, problem.params) or problem.message
    return problem.message


def error_text(language: Language, exc: LabError) -> str:
    """What went wrong, translated at the edge from the error's code and parameters.

    An error without a code (or with one the catalogs do not know yet) shows the service's
    own words: better an English sentence than no reason at all.
    """
    if exc.code:
        text = coded_text(language, exc.code, exc.params)
        if text is not None:
            return text
    if exc.problems:
        return "; ".join(problem_text(language, p) for p in exc.problems)
    return exc.message


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
    env.filters["number"] = _number_filter
    env.filters["signed"] = _signed_filter
    env.filters["decimal_text"] = _decimal_text_filter
    env.filters["hold_text"] = _hold_text_filter
    env.filters["delta_limit"] = _delta_limit_filter
    env.filters["version_reason"] = _version_reason_filter
    env.filters["who"] = _who_filter
    env.filters["unmatched_reason"] = _unmatched_reason_filter
    env.tests["unmatched_known"] = _unmatched_known
    env.filters["critical_call"] = _critical_call_filter
    env.filters["unit"] = _unit_filter
    env.filters["clinician"] = display_clinician
    env.filters["analyser_flags"] = analyser_flags
    env.filters["iso_when"] = _iso_when
    env.filters["event_detail"] = _event_detail_filter
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

    def tn(key: str, count: int, **values: object) -> str:
        return translate_plural(language, key, count, **values)

    def may(permission: str) -> bool:
        return Permission(permission) in granted

    def has_role(*roles: str) -> bool:
        return actor is not None and bool(set(actor.roles) & set(roles))

    strip = _status_strip(request, granted) if actor is not None else []
    base: dict[str, Any] = {
        "request": request,
        "lang": language,
        "t": t,
        "tn": tn,
        "may": may,
        "has_role": has_role,
        "actor": actor,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "status_strip": strip,
        "lab_name": request.app.state.settings.lab_name,
        "path": request.url.path,
    }
    base.update(context)
    return base


def _status_strip(request: Request, granted: frozenset[Permission]) -> list[StripLine]:
    report = request.app.state.components.report()
    if not report:
        return []
    waiting: dict[str, int] = {}
    if Permission.VIEW_ANALYSERS in granted:
        from instruments.service import open_unmatched_counts

        with request.app.state.session_factory() as session:
            waiting = open_unmatched_counts(session)
    return strip_lines(report, open_unmatched=waiting)


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
