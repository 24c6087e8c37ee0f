"""No one acts in another's name, and everything can be revoked (issue 14).

The `lab` command runs as a real process against the test database; the app answers on a real
socket (uvicorn), with its own engine, as `lab serve` would.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select, update

from lab.config import Settings
from lab.db import make_engine
from lab.main import create_app
from lab.tables import ApiToken, AuditEvent, User, WebSession
from lab.timeutil import utcnow
from testkit.database import PASSWORD, ScratchDatabase
from tests.test_cli import lab

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def runtime_engine(test_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(test_database.runtime_url, pool_size=4)
    yield engine
    engine.dispose()


@pytest.fixture
def base(settings: Settings, runtime_engine: Engine) -> Iterator[str]:
    """The app under uvicorn on a real socket, with an engine of its own (no test transaction)."""
    app = create_app(settings, engine=runtime_engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    sock.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(base: str, username: str, password: str = PASSWORD) -> httpx.Client:
    browser = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    page = browser.get("/login")
    found = _CSRF.search(page.text)
    assert found is not None
    done = browser.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": found.group(1)},
    )
    assert done.status_code == 303, done.text
    return browser


def session_csrf(browser: httpx.Client) -> str:
    found = _CSRF.search(browser.get("/").text)
    assert found is not None
    return found.group(1)


def new_token(url: str, username: str, *extra: str) -> tuple[int, str]:
    made = lab("token", "create", username, *extra, database_url=url)
    assert made.returncode == 0, made.stderr
    number = re.search(r"API token (\d+) for", made.stdout)
    assert number is not None, made.stdout
    return int(number.group(1)), made.stdout.strip().splitlines()[-1]


def test_the_operator_makes_lists_and_revokes_tokens(
    test_database: ScratchDatabase, base: str, runtime_engine: Engine
) -> None:
    url = test_database.url
    added = lab(
        "user", "add", "op-lege", "--role", "physician", "--password-stdin",
        database_url=url, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    token_id, token = new_token(url, "op-lege", "--label", "script", "--days", "30")
    me = httpx.get(f"{base}/api/v1/me", headers=bearer(token)).json()
    assert me["username"] == "op-lege"
    # The person sees who gave them the clinical role: the operator (`system`), on the server.
    granted = me["account_changes"][-1]
    assert granted["action"] == "user.create" and granted["by"] == "system"
    assert granted["roles_after"] == ["physician"]

    listed = lab("token", "list", "op-lege", database_url=url)
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.split()[0] == str(token_id))
    assert "active" in line and "script" in line and token not in listed.stdout
    assert line.count("-") >= 4  # created, expires and last used are dates now
    with runtime_engine.connect() as connection:
        row = connection.execute(select(ApiToken).where(ApiToken.id == token_id)).one()
    assert row.expires_at - row.created_at > timedelta(days=29)
    assert row.expires_at - row.created_at < timedelta(days=31)
    assert row.last_used_at is not None

    revoked = lab("token", "revoke", str(token_id), database_url=url)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(token)).status_code == 401
    assert "revoked" in lab("token", "list", "op-lege", database_url=url).stdout

    # Expired: a token whose day has passed gets 401 like a revoked one.
    expiring_id, expiring = new_token(url, "op-lege")
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(expiring)).status_code == 200
    with runtime_engine.begin() as connection:
        connection.execute(
            update(ApiToken)
            .where(ApiToken.id == expiring_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(expiring)).status_code == 401
    assert "expired" in lab("token", "list", "op-lege", database_url=url).stdout


def test_a_new_password_and_a_disable_end_sessions_and_tokens(
    test_database: ScratchDatabase, base: str
) -> None:
    url = test_database.url
    assert lab(
        "user", "add", "op-bio", "--role", "technician", "--password-stdin",
        database_url=url, stdin=PASSWORD + "\n",
    ).returncode == 0  # fmt: skip
    _, token = new_token(url, "op-bio")
    browser = sign_in(base, "op-bio")
    assert browser.get("/").status_code == 200

    changed = lab("user", "password", "op-bio", database_url=url, stdin="et annet passord\n")
    assert changed.returncode == 0, changed.stderr
    assert "sessions and tokens ended" in changed.stdout
    assert browser.get("/").status_code == 303  # back to the sign-in page
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(token)).status_code == 401

    _, token = new_token(url, "op-bio")
    browser = sign_in(base, "op-bio", "et annet passord")
    disabled = lab("user", "disable", "op-bio", database_url=url)
    assert disabled.returncode == 0, disabled.stderr
    assert browser.get("/").status_code == 303
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(token)).status_code == 401
    assert lab("user", "enable", "op-bio", database_url=url).returncode == 0
    assert httpx.get(f"{base}/api/v1/me", headers=bearer(token)).status_code == 401


def test_nobody_mints_a_token_in_another_name(
    test_database: ScratchDatabase, base: str, runtime_engine: Engine
) -> None:
    admin = sign_in(base, "t-admin")
    csrf = {"X-CSRF-Token": session_csrf(admin)}
    admin_token = test_database.tokens["admin"]
    for headers in (csrf, None):
        client_headers = headers if headers is not None else bearer(admin_token)
        sender = admin if headers is not None else httpx.Client(base_url=base)
        minted = sender.post(
            "/api/v1/users/t-physician/tokens", json={"label": "x"}, headers=client_headers
        )
        assert minted.status_code == 403, minted.text
        assert "only for yourself" in minted.json()["message"]
    # Nor makes a physician, or gives the role: the operator does that on the server.
    made = admin.post(
        "/api/v1/users",
        json={"username": "adm-lege", "roles": ["physician"], "password": PASSWORD},
        headers=csrf,
    )
    assert made.status_code == 403 and made.json()["problems"] == []
    given = admin.put(
        "/api/v1/users/t-display/roles", json={"roles": ["display", "reviewer"]}, headers=csrf
    )
    assert given.status_code == 403
    # A web administrator may make a wall-screen account; a machine account has no password.
    wall = admin.post(
        "/api/v1/users",
        json={"username": "adm-vegg", "roles": ["display"], "password": PASSWORD},
        headers=csrf,
    )
    assert wall.status_code == 201
    machine = lab("user", "add", "op-bad", "--role", "instrument", "--password-stdin",
                  database_url=test_database.url, stdin=PASSWORD + "\n")  # fmt: skip
    assert machine.returncode == 2 and "no password" in machine.stderr
    mixed = lab("user", "add", "op-mixed", "--role", "interface", "--role", "physician",
                database_url=test_database.url)  # fmt: skip
    assert mixed.returncode == 2 and "person role" in mixed.stderr
    analyser = lab("user", "add", "op-analyser", "--role", "instrument",
                   database_url=test_database.url)  # fmt: skip
    assert analyser.returncode == 0 and "no password" in analyser.stdout

    # A person makes their own token from a signed-in session, lists it, revokes it.
    lege = sign_in(base, "t-physician")
    lege_csrf = {"X-CSRF-Token": session_csrf(lege)}
    mine = lege.post("/api/v1/me/tokens", json={"label": "mitt skript"}, headers=lege_csrf)
    assert mine.status_code == 201, mine.text
    made_token = mine.json()
    listed = lege.get("/api/v1/me/tokens").json()
    assert made_token["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)
    as_token = httpx.Client(base_url=base, headers=bearer(made_token["token"]))
    assert as_token.get("/api/v1/me").json()["username"] == "t-physician"
    # A token cannot mint a longer-lived successor, and nobody else revokes it.
    assert as_token.post("/api/v1/me/tokens", json={}).status_code == 403
    other = httpx.post(
        f"{base}/api/v1/tokens/{made_token['id']}/revoke",
        headers=bearer(test_database.tokens["technician"]),
    )
    assert other.status_code == 403
    gone = lege.post(f"/api/v1/tokens/{made_token['id']}/revoke", headers=lege_csrf)
    assert gone.status_code == 200 and gone.json()["state"] == "revoked"
    assert as_token.get("/api/v1/me").status_code == 401

    # The audit names the credential used: the session for the revocation above.
    with runtime_engine.connect() as connection:
        via = connection.execute(
            select(AuditEvent.via)
            .where(AuditEvent.action == "token.revoke", AuditEvent.actor_name == "t-physician")
            .order_by(AuditEvent.id.desc())
        ).first()
    assert via is not None and via[0].startswith("session:")


def test_a_session_has_an_absolute_lifetime_but_the_wall_screen_stays(
    base: str, runtime_engine: Engine
) -> None:
    browser = sign_in(base, "t-technician")
    assert browser.get("/").status_code == 200
    with runtime_engine.begin() as connection:
        user_id = connection.execute(
            select(User.id).where(User.username == "t-technician")
        ).scalar_one()
        connection.execute(
            update(WebSession)
            .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
            .values(created_at=utcnow() - timedelta(hours=12, minutes=1))
        )
    # Used a minute ago, so the idle timeout has not run out: the 12 hours have.
    assert browser.get("/").status_code == 303
    assert browser.get("/").status_code == 303  # and it stays ended

    wall = sign_in(base, "t-display")
    with runtime_engine.begin() as connection:
        user_id = connection.execute(
            select(User.id).where(User.username == "t-display")
        ).scalar_one()
        connection.execute(
            update(WebSession)
            .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
            .values(created_at=utcnow() - timedelta(days=3))
        )
    assert wall.get("/wall").status_code == 200
