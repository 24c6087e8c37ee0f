"""`lab serve`: migrate, seed the demo if asked, and run everything in one process."""

from __future__ import annotations

import logging

import uvicorn

import instruments.runtime
import lab.hl7.runtime
from lab.config import Settings
from lab.db import database_url, make_engine, make_session_factory, transaction
from lab.demo import seed
from lab.main import create_app
from lab.migrate import upgrade

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    url = database_url(settings)
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    if settings.demo:
        with transaction(factory) as session:
            made = seed(session, password=settings.demo_password)
        for username, password in made.items():
            # Printed, not logged: the passwords are shown once, to the person starting the demo.
            shown = "(LAB_DEMO_PASSWORD)" if settings.demo_password else password
            print(f"demo user {username:6s} password: {shown}", flush=True)
    app = create_app(
        settings,
        engine=engine,
        session_factory=factory,
        starters=[instruments.runtime.starter(settings), lab.hl7.runtime.starter(settings)],
    )
    bind_host = host or settings.http_host
    bind_port = port or settings.http_port
    print(
        f"lab module listening on http://{bind_host}:{bind_port}/ (API docs at /docs)", flush=True
    )
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="info")
    return 0
