"""A running lab module for browser tests: its own fresh database and a uvicorn thread.

The per-test rolled-back transaction of tests/conftest.py cannot be shared with a server
thread, so browser tests get a scratch database of their own (testkit.database: created,
migrated by Alembic, seeded with the demo catalog and the demo users admin, bio and lege), and
dropped afterwards.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lab.config import Settings
from lab.db import make_engine, make_session_factory
from lab.main import create_app
from testkit.database import create_database, drop_database, server_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class LiveServer:
    base_url: str
    engine: Engine
    sessions: sessionmaker[Session]


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with a second bind
    return sock


def run_live_server(tmp_root: Path) -> Iterator[LiveServer]:
    database = create_database(server_url(embedded_root=tmp_root / "pg"), "browser")
    engine: Engine | None = None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        engine = make_engine(database.runtime_url, pool_size=4)
        factory = make_session_factory(engine)
        app = create_app(
            # One server for a whole module of browser tests, all signing in from 127.0.0.1:
            # the sign-in rates are for strangers (tests/web/test_login_limits.py tests them).
            Settings(
                database_url=database.url,
                data_dir=tmp_root,
                login_rate_per_address=100_000,
                login_rate_per_account=100_000,
            ),
            engine=engine,
            session_factory=factory,
        )
        sock = _free_socket()
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the lab module did not start")
            time.sleep(0.02)
        yield LiveServer(base_url=f"http://127.0.0.1:{port}", engine=engine, sessions=factory)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if engine is not None:
            engine.dispose()
        drop_database(database)
