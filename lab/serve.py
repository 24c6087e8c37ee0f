"""`lab serve`: migrate, seed the demo if asked, and run everything in one process.

`LAB_ROLES` (default `web,hl7,instruments`) says which parts this node runs, so the parts can be
spread over several machines against one PostgreSQL (docs/install.md): `web` the UI and JSON API,
`hl7` the MLLP listener, the outbox dispatcher and the release job, `instruments` every
configured analyser line and the turnaround indexer of their archive. A node without `web`
still answers `GET /healthz` (and only that) on its HTTP port, for the load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

import instruments.runtime
import lab.hl7.runtime
import lab.qc.runtime
import lab.turnaround.runtime
import lab.upkeep
from lab import audit_chain
from lab.config import Settings
from lab.db import database_url, make_engine, make_session_factory, runtime_url, transaction
from lab.demo import DEMO_USERS, seed
from lab.intake import shared_listener, supervisor_starter
from lab.lifespan import Starter
from lab.main import create_app
from lab.migrate import upgrade

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    roles = settings.role_set()
    url = database_url(settings)
    upgrade(url)
    engine = make_engine(runtime_url(settings, url))  # the service runs as lab_runtime
    factory = make_session_factory(engine)
    made: dict[str, str] = {}
    if settings.demo:
        with transaction(factory) as session:
            made = seed(session, password=settings.demo_password)
        for username, password in made.items():
            # Printed, not logged: the passwords are shown once, to the person starting the demo.
            shown = "(LAB_DEMO_PASSWORD)" if settings.demo_password else password
            print(f"demo user {username:6s} password: {shown}", flush=True)
    # The audit chain, and a look every few minutes at whether PostgreSQL keeps the tables'
    # statistics current (lab/upkeep.py: /healthz says when it does not).
    starters: list[Starter] = [audit_sealer(), lab.upkeep.starter()]
    # Intake on every core (lab/intake.py): this process is worker 0 of `workers`.
    workers = settings.worker_count() if roles & {"hl7", "instruments"} else 1
    if "instruments" in roles:
        starters += [
            instruments.runtime.starter(settings, share=(0, workers)),
            lab.turnaround.runtime.starter(settings),
            # Patient-based QC: moving statistics checked every minute, drifts stored.
            lab.qc.runtime.starter(),
        ]
    spread = None
    if "hl7" in roles and workers > 1:
        # One listening socket for every intake process; each takes new connections in turn.
        spread = shared_listener(settings, index=0, count=workers)
    if "hl7" in roles:
        # Poll the outbox often: a verified result should reach the record within a second.
        starters.append(
            lab.hl7.runtime.starter(
                settings, timing=lab.hl7.runtime.Timing(dispatch_every=0.2), spread=spread
            )
        )
    if workers > 1:
        starters.append(
            supervisor_starter(
                settings,
                database_url=url,
                count=workers,
                listening=spread.socket if spread is not None else None,
            )
        )
    app = create_app(settings, engine=engine, session_factory=factory, starters=starters)
    bind_host = host or settings.http_host
    bind_port = port or settings.http_port
    print(
        f"lab module ({', '.join(sorted(roles))}; {workers} intake process"
        f"{'es' if workers > 1 else ''}) listening on http://{bind_host}:{bind_port}/"
        + (" (API docs at /docs)" if "web" in roles else " (health check only)"),
        flush=True,
    )
    if settings.demo and "web" in roles:
        _print_next_steps(settings, bind_host, bind_port, shown_now=bool(made))
    # uvicorn re-raises SIGTERM after its graceful shutdown; turned into SystemExit here, so
    # exit handlers run (they stop the embedded PostgreSQL) instead of the process just dying.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    served: ASGIApp = app if "web" in roles else health_only(app)
    logging.getLogger("uvicorn.access").addFilter(WithoutQuery())
    uvicorn.run(served, host=bind_host, port=bind_port, log_level="info")
    return 0


class WithoutQuery(logging.Filter):
    """Drops the query string from uvicorn's access log lines: a query may hold a
    fødselsnummer or a name (`?q=...`), and logs must hold no patient data."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def audit_sealer(every: float = 5.0) -> Starter:
    """Seals committed audit rows into the hash chain every few seconds (lab/audit_chain.py);
    every node runs it, an advisory lock lets one seal at a time."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        factory = app.state.session_factory

        def seal_now() -> None:
            try:
                with transaction(factory) as session:
                    audit_chain.seal(session)
            except Exception:  # the next round tries again; verify reports unsealed rows
                log.exception("audit sealing failed")

        async def loop() -> None:
            while True:
                await asyncio.to_thread(seal_now)
                await asyncio.sleep(every)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def health_only(app: ASGIApp) -> ASGIApp:
    """The app of a node without the `web` role: `/healthz` and the lifespan, nothing else."""

    async def serve_health(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await app(scope, receive, send)

    return serve_health


def _print_next_steps(settings: Settings, host: str, port: int, *, shown_now: bool) -> None:
    users = ", ".join(
        f"{name} ({'/'.join(role.value for role in roles)})" for name, _, roles in DEMO_USERS
    )
    passwords = (
        "LAB_DEMO_PASSWORD"
        if settings.demo_password
        else "shown above"
        if shown_now
        else "shown on the first start; `lab user password NAME` sets a new one"
    )
    print(
        "\nWhat to do next:\n"
        f"  1. open http://{host}:{port}/ and sign in: {users}; passwords: {passwords}\n"
        f"  2. play a day in the lab, in another terminal:  .venv/bin/lab demo run\n"
        "     (orders arrive from the record over HL7, tubes are received, a TCP and a serial\n"
        "     analyser send results; sign in as lege to verify them and watch them leave)\n"
        f"  3. or feed the demo analyser (ASTM over TCP on 127.0.0.1:{settings.demo_astm_port}) "
        "yourself:\n"
        "     .venv/bin/lab instrument simulate --tcp "
        f"127.0.0.1:{settings.demo_astm_port} --from-worklist "
        f"--api http://{host}:{port} --token $(.venv/bin/lab token create bio | tail -n 1)\n"
        f"  HL7 orders: MLLP on {settings.mllp_host}:{settings.mllp_port}.  Stop with Ctrl-C.\n",
        flush=True,
    )
