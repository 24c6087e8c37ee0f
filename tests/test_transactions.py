"""One place where a request's transaction ends: the session dependency (lab/deps.py).

A route that answers has its work committed (audit rows of a read included); a route that
raises has it rolled back, whether the one error handler answers with JSON or with a page.
Routes never commit themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from lab import audit
from lab.audit import Actor
from lab.config import Settings
from lab.deps import SessionDep
from lab.errors import Conflict
from lab.main import create_app
from lab.tables import AuditEvent
from lab.web.pages import page_router

ROOT = Path(__file__).resolve().parents[1]
_ROUTES = re.compile(r"\bAPIRouter\(|\bpage_router\(\)")
_COMMIT = re.compile(r"\.commit\(\)")


def _route_modules() -> list[Path]:
    modules = []
    for package in ("lab", "instruments"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if _ROUTES.search(path.read_text(encoding="utf-8")):
                modules.append(path)
    return modules


def test_no_route_module_commits() -> None:
    modules = _route_modules()
    assert len(modules) >= 10, "the search for route modules found too few to mean anything"
    committing = [
        str(path.relative_to(ROOT))
        for path in modules
        if _COMMIT.search(path.read_text(encoding="utf-8"))
    ]
    assert not committing, f"routes must not end their transaction: {committing}"


def _mark(session: Session, action: str) -> None:
    audit.record(
        session,
        actor=Actor.system("api"),
        action=action,
        entity_type="test",
        entity_id="transactions",
    )


@pytest.fixture
def app_client(
    settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine, session_factory=session_factory)
    api = APIRouter(prefix="/test-transactions")
    pages = page_router()

    @api.post("/answers")
    def answers(session: SessionDep) -> dict[str, str]:
        _mark(session, "test.answered")
        return {"ok": "yes"}

    @api.post("/refuses")
    def refuses(session: SessionDep) -> dict[str, str]:
        _mark(session, "test.refused")
        raise Conflict("refused after a change")

    @pages.post("/test-transactions/page-refuses")
    def page_refuses(session: SessionDep) -> dict[str, str]:
        _mark(session, "test.page_refused")
        raise Conflict("refused after a change, on a page")

    app.include_router(api)
    app.include_router(pages)
    with TestClient(app) as client:
        yield client


def _marks(db: Session, action: str) -> int:
    db.expire_all()
    return len(list(db.scalars(select(AuditEvent.id).where(AuditEvent.action == action))))


def test_an_answer_commits_the_work(app_client: TestClient, db: Session) -> None:
    assert app_client.post("/test-transactions/answers").status_code == 200
    assert _marks(db, "test.answered") == 1


def test_an_error_rolls_the_work_back(app_client: TestClient, db: Session) -> None:
    answer = app_client.post("/test-transactions/refuses")
    assert answer.status_code == 409
    assert answer.json()["error"] == "Conflict"
    assert _marks(db, "test.refused") == 0


def test_an_error_on_a_page_rolls_the_work_back(app_client: TestClient, db: Session) -> None:
    answer = app_client.post("/test-transactions/page-refuses")
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("text/html")
    assert "refused after a change, on a page" in answer.text
    assert _marks(db, "test.page_refused") == 0
