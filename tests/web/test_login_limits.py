"""Sign-in without knowing anyone (issue 14): a rate per address and per name, a fixed number of
password checks at a time, and one answer for a wrong password, an unknown name and a lock.

The app answers on a real socket (uvicorn) with its own engine. `pytest -s` prints the
figure of the flood test: /healthz latency while 60 wrong sign-ins arrive at once.
"""

from __future__ import annotations

import re
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from lab.config import Settings
from lab.db import make_engine
from lab.main import create_app
from testkit.database import ScratchDatabase, create_database, drop_database
from testkit.process import LabProcess, free_port

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ERROR = re.compile(r'<p class="error" role="alert" id="login-error">([^<]*)</p>')


@pytest.fixture(scope="module")
def login_database(database_server: str) -> Iterator[ScratchDatabase]:
    """A database of this module's own: its servers commit, and the wrong passwords they are
    sent lock `t-reviewer` and `t-technician`, who must still sign in in every other test."""
    database = create_database(database_server, "login", role_users=True)
    yield database
    drop_database(database)


@pytest.fixture
def settings(login_database: ScratchDatabase, tmp_path: Path) -> Settings:
    return Settings(database_url=login_database.url, data_dir=tmp_path)


@pytest.fixture
def runtime_engine(login_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(login_database.runtime_url, pool_size=8)
    yield engine
    engine.dispose()


def serve(settings: Settings, engine: Engine) -> Iterator[str]:
    app = create_app(settings, engine=engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", backlog=256))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def base(settings: Settings, runtime_engine: Engine) -> Iterator[str]:
    yield from serve(settings, runtime_engine)


@pytest.fixture
def flood_base(tmp_path: Path, login_database: ScratchDatabase) -> Iterator[str]:
    """`lab serve` (web only) in a process of its own, as in production, with rates high
    enough that every sign-in of the flood reaches the password check."""
    server = LabProcess(
        env={
            "LAB_DATABASE_URL": login_database.url,
            "LAB_DATA_DIR": str(tmp_path),
            "LAB_ROLES": "web",
            "LAB_LOGIN_RATE_PER_ADDRESS": "10000",
            "LAB_LOGIN_RATE_PER_ACCOUNT": "10000",
        },
        http_port=free_port(),
        log_path=tmp_path / "serve.log",
    )
    server.start()
    try:
        yield server.base
    finally:
        server.stop()


def attempt(base: str, username: str, password: str = "wrong password!") -> httpx.Response:
    with httpx.Client(base_url=base, timeout=120) as browser:
        page = browser.get("/login")
        found = _CSRF.search(page.text)
        assert found is not None
        return browser.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": found.group(1)},
        )


def error_of(response: httpx.Response) -> str:
    found = _ERROR.search(response.text)
    assert found is not None, response.text[:500]
    return found.group(1)


def test_a_lock_reads_like_a_wrong_password(base: str) -> None:
    for _ in range(5):
        assert attempt(base, "t-reviewer").status_code == 400
    locked = attempt(base, "t-reviewer")
    unknown = attempt(base, "ingen-slik-bruker")
    assert locked.status_code == unknown.status_code == 400
    assert error_of(locked) == error_of(unknown)
    assert "Feil brukernavn eller passord" in error_of(locked)


def test_a_name_and_an_address_have_a_rate(base: str) -> None:
    answers = [attempt(base, "hvem-som-helst").status_code for _ in range(11)]
    assert answers[:10] == [400] * 10 and answers[10] == 429
    refused = attempt(base, "hvem-som-helst")
    assert refused.headers["retry-after"] == "60"
    assert "For mange innloggingsforsøk" in error_of(refused)
    # Another name from the same address still gets through, until the address's 30.
    others = Counter(attempt(base, f"navn-{n}").status_code for n in range(18))
    assert others == Counter({400: 18})
    assert attempt(base, "enda-en").status_code == 429  # the address's 31st in a minute


def test_a_login_flood_leaves_healthz_fast(flood_base: str) -> None:
    """60 wrong sign-ins at once: at most LAB_LOGIN_HASH_WORKERS (2) argon2 checks run, 8 wait,
    the rest get 503 at once; /healthz answers meanwhile."""
    with httpx.Client(base_url=flood_base, timeout=60) as probe:
        assert probe.get("/healthz").status_code == 200
        quiet = []
        for _ in range(10):
            started = time.perf_counter()
            probe.get("/healthz")
            quiet.append(time.perf_counter() - started)

        flooding = threading.Event()
        during: list[float] = []

        def measure() -> None:
            while not flooding.is_set():
                time.sleep(0.01)
            with httpx.Client(base_url=flood_base, timeout=60) as own:
                while flooding.is_set():
                    started = time.perf_counter()
                    assert own.get("/healthz").status_code == 200
                    during.append(time.perf_counter() - started)
                    time.sleep(0.05)

        watcher = threading.Thread(target=measure)
        watcher.start()
        names = [f"flom-{n % 7}" if n % 2 else "t-technician" for n in range(60)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=60) as pool:
            flooding.set()
            statuses = Counter(
                r.status_code for r in pool.map(lambda n: attempt(flood_base, n), names)
            )
        flood_seconds = time.perf_counter() - started
        flooding.clear()
        watcher.join()

    assert sum(statuses.values()) == 60 and set(statuses) <= {400, 503}, statuses
    assert statuses[503] > 0  # the places were full: refused at once, not queued
    assert len(during) >= 3
    worst = max(during)
    print(
        "\n/healthz during 60 parallel wrong sign-ins: median "
        f"{statistics.median(during) * 1000:.0f} ms, worst {worst * 1000:.0f} ms over "
        f"{len(during)} calls (quiet: median "
        f"{statistics.median(quiet) * 1000:.0f} ms); the flood took {flood_seconds:.1f} s; "
        f"answers {dict(sorted(statuses.items()))}"
    )
    # Before the bound (issue 14) /healthz took 31 s here; on a machine shared by other work
    # a single call may wait for the CPU, so the median carries the claim and the worst a ceiling.
    assert statistics.median(during) < 0.5
    assert worst < 5.0
