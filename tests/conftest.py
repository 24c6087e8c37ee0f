"""Test fixtures: a real PostgreSQL whose schema is made by the Alembic migrations.

The database server is `LAB_TEST_DATABASE_URL` (CI: the machine's PostgreSQL on 127.0.0.1:5432),
or, when that is unset and nothing answers on 127.0.0.1:5432, an embedded PostgreSQL. Each test
run makes its own databases (testkit.database), migrates them once, seeds the demo catalog and
one user per role (the demo rule documents as drafts: see `demo_rules`), and wraps every test
in a transaction that is rolled back (polar's pattern).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from lab.audit import Actor
from lab.config import Settings
from lab.db import make_engine
from lab.main import create_app
from lab.rulesets import service as rulesets
from lab.rulesets.service import ActiveRules as RuleBundle
from lab.tables.rulesets import RuleKind
from lab.users.roles import Role
from testkit.database import ScratchDatabase, create_database, drop_database, server_url
from tests.web.live_server import CHROMIUM, CHROMIUM_ARGS, LiveServer


@pytest.fixture(scope="session")
def database_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    return server_url(embedded_root=tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def test_database(database_server: str) -> Iterator[ScratchDatabase]:
    """The database of tests that roll back: nothing any test does here is kept."""
    database = create_database(database_server, "test", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture(scope="session")
def committed_database(database_server: str) -> Iterator[ScratchDatabase]:
    """A second database for tests whose servers commit from other threads (listeners,
    analyser links): their rows stay, so they must not show up in the rolled-back tests."""
    database = create_database(database_server, "committed", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture(scope="session")
def engine(test_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(test_database.runtime_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        outer = connection.begin()
        yield connection
        outer.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    # Sessions join the outer transaction; their commits only release a savepoint.
    return sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, test_database: ScratchDatabase) -> Settings:
    return Settings(database_url=test_database.url, data_dir=tmp_path)


@pytest.fixture
def client(
    settings: Settings, engine: Engine, session_factory: sessionmaker[Session]
) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine, session_factory=session_factory)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def tokens(test_database: ScratchDatabase) -> dict[str, str]:
    return dict(test_database.tokens)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_role(tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    """Headers per role: `as_role["technician"]`."""
    return {role: auth(token) for role, token in tokens.items()}


def actor(role: Role | str, username: str | None = None) -> Actor:
    name = str(role)
    return Actor(user_id=None, username=username or f"t-{name}", roles=frozenset({name}))


@pytest.fixture
def demo_rules(db: Session) -> RuleBundle:
    """The demo rule documents (version 1 of each kind) made active by the lab physician in
    this test's transaction, rolled back with it. The test databases keep them as drafts, so
    a test without this fixture sees no active rule set: nothing is released without a person."""
    physician = actor(Role.PHYSICIAN)
    for kind in RuleKind:
        rulesets.change_state(db, actor=physician, kind=kind.value, version=1, state="active")
    db.flush()
    return rulesets.active_rules(db)


# --- the browser: one headless Chromium per module, a fresh bokmål page per test ------------
# The tests of a module share one Chromium (Debian's, `make system-deps`) and get a fresh page on
# the `live` server their module starts (tests/web/live_server.py).


# Per module, not per session: while Playwright's sync API is open its event loop runs in this
# thread, and tests after the browser modules that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    """A fresh browser context (no cookies) in bokmål on the module's live server."""
    context = browser.new_context(
        base_url=live.base_url, viewport={"width": 1366, "height": 900}, locale="nb-NO"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    # Whatever the page's Content-Security-Policy refuses (an inline style or script) is a page
    # that does not look or work as built: collected here and failed after the test.
    refused: list[str] = []
    page.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert not refused, f"the Content-Security-Policy refused: {refused}"
