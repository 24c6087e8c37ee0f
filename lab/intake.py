"""Intake on every core: the HL7 listener and the analyser lines in several worker processes.

The work of intake (parse a message, commit it, acknowledge) is CPU-bound Python, so one
process uses one core however many connections arrive. `lab serve` therefore runs the intake in
`LAB_WORKERS` processes (default: one per core): itself as worker 0, and `python -m lab.intake
K N` children as workers 1 .. N-1, which it supervises (a worker that dies is started again).

- The HL7 listener runs in every worker on one listening socket, made by worker 0 and handed to
  each child; a worker takes a new connection only while no live worker holds fewer
  (`lab.hl7.listener.AcceptSpread`), so the record's connections are spread evenly. (With
  SO_REUSEPORT, as before, the kernel chose by a hash of the addresses: 4 connections over 2
  workers all went to one in 2 tries of 6.) A connection stays in the process that accepted
  it, so the messages of one connection are still handled one after the other, in order, and
  each is acknowledged only after its commit, as before.
- The analysers are shared out by their place in the instruments file (analyser i runs in worker
  i mod N), so each analyser line, serial or TCP, is driven by exactly one process.
- Work that must run once (the outbox dispatcher, the release job, the turnaround indexer, the
  web app) stays in worker 0; it is guarded in the database as well (SKIP LOCKED), so a second
  node running it too is safe.
- Each child writes its components' state to `LAB_DATA_DIR/run/intake-K.json` every second;
  worker 0 shows them in `/healthz` beside its own, with the state of the workers themselves.
- The children are given the database URL worker 0 resolved, so with the embedded PostgreSQL they
  join the server worker 0 started instead of starting (and later stopping) one of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

import instruments.runtime
import lab.hl7.runtime
from lab.config import Settings
from lab.db import make_engine, make_session_factory, runtime_url
from lab.hl7.listener import AcceptSpread, bind_shared
from lab.lifespan import Starter
from lab.main import create_app

log = logging.getLogger(__name__)

STATUS_EVERY = 1.0  # seconds between a child's status files
STALE_AFTER = 5.0  # a status file older than this means the child is not working
READY_WITHIN = 120.0  # seconds worker 0 waits at start for its children to listen
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0)  # seconds before restarting a child, by failures in a row


LISTEN_FD = "LAB_INTAKE_MLLP_FD"  # set by worker 0 for its children: the MLLP socket


def status_path(settings: Settings, index: int) -> Path:
    return settings.data_dir / "run" / f"intake-{index}.json"


def _spread_path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "hl7-connections"


def shared_listener(settings: Settings, *, index: int, count: int) -> AcceptSpread:
    """Worker 0: bind the MLLP port once for every intake process; a child: take the socket
    worker 0 handed down (its descriptor in LAB_INTAKE_MLLP_FD)."""
    path = _spread_path(settings)
    if index == 0:
        listening = bind_shared(settings.mllp_host, settings.mllp_port)
        AcceptSpread.make_file(path, count)
    else:
        listening = socket.socket(fileno=int(os.environ[LISTEN_FD]))
        listening.setblocking(False)
    return AcceptSpread(listening, path, index=index, count=count)


@dataclass(slots=True)
class Child:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    next_start_at: float = 0.0


@dataclass(slots=True)
class IntakeWorkers:
    """Worker 0's supervisor of the children 1 .. count-1."""

    settings: Settings
    database_url: str
    count: int
    listening: socket.socket | None = None  # the MLLP socket the children share
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "lab.intake", str(index), str(self.count)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LAB_DATABASE_URL"] = self.database_url
        env["LAB_DATA_DIR"] = str(self.settings.data_dir)
        if self.listening is not None:
            env[LISTEN_FD] = str(self.listening.fileno())
        else:
            env.pop(LISTEN_FD, None)
        return env

    def start(self) -> None:
        (self.settings.data_dir / "run").mkdir(parents=True, exist_ok=True)
        self.children = [Child(index=index) for index in range(1, self.count)]
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        with contextlib.suppress(FileNotFoundError):
            status_path(self.settings, child.index).unlink()
        shared = (self.listening.fileno(),) if self.listening is not None else ()
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command(child.index),
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            pass_fds=shared,
        )
        child.started_at = time.monotonic()
        log.info("intake worker %d started (pid %d)", child.index, child.process.pid)

    def watch(self) -> None:
        """Start again any child that has exited, after a backoff that grows while it keeps
        failing soon after its start."""
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is None or process.poll() is None or self.stopping:
                continue
            if child.next_start_at == 0.0:
                lived = now - child.started_at
                child.failures_in_a_row = child.failures_in_a_row + 1 if lived < 30 else 1
                wait = RESTART_BACKOFF[min(child.failures_in_a_row, len(RESTART_BACKOFF)) - 1]
                child.next_start_at = now + wait
                log.warning(
                    "intake worker %d exited with %s; starting it again in %.0f s",
                    child.index,
                    process.returncode,
                    wait,
                )
            elif now >= child.next_start_at:
                child.next_start_at = 0.0
                child.restarts += 1
                self._spawn(child)

    def stop(self, wait: float = 15.0) -> None:
        self.stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _status_files(self) -> list[tuple[Child, dict[str, Any] | None]]:
        found: list[tuple[Child, dict[str, Any] | None]] = []
        now = time.time()
        for child in self.children:
            try:
                written = json.loads(status_path(self.settings, child.index).read_text())
            except (FileNotFoundError, ValueError):
                written = None
            alive = child.process is not None and child.process.poll() is None
            fresh = written is not None and now - float(written.get("at", 0)) < STALE_AFTER
            found.append((child, written if alive and fresh else None))
        return found

    def ready(self) -> bool:
        return all(written is not None for _child, written in self._status_files())

    def instrument_status(self, name: str) -> dict[str, Any] | None:
        """The line state of analyser `name` if a live child runs it (for the analyser API)."""
        for _child, written in self._status_files():
            if written is not None and name in written.get("instruments", {}):
                return dict(written["instruments"][name])
        return None

    def components(self) -> dict[str, dict[str, Any]]:
        """Each child's own components, named `<component>@<worker>`, as its last status file
        says; a child that is down or silent shows as down."""
        report: dict[str, dict[str, Any]] = {}
        for child, written in self._status_files():
            if written is None:
                alive = child.process is not None and child.process.poll() is None
                state = "starting" if alive else "down"
                report[f"intake_worker@{child.index}"] = {
                    "state": state,
                    "restarts": child.restarts,
                }
                continue
            report[f"intake_worker@{child.index}"] = {
                "state": "up",
                "pid": written.get("pid"),
                "restarts": child.restarts,
            }
            for name, status in written.get("components", {}).items():
                report[f"{name}@{child.index}"] = status
        return report


def supervisor_starter(
    settings: Settings,
    *,
    database_url: str,
    count: int,
    listening: socket.socket | None = None,
) -> Starter:
    """Worker 0's part: start the children with the app, watch them, stop them with it."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        workers = IntakeWorkers(
            settings=settings, database_url=database_url, count=count, listening=listening
        )
        await asyncio.to_thread(workers.start)
        # The node is ready when its intake is: the web app (and /healthz) answers only once
        # every child listens, so nothing is sent to an analyser line that no one drives yet.
        deadline = time.monotonic() + READY_WITHIN
        while not workers.ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if not workers.ready():
            log.warning("intake workers not all up after %.0f s; carrying on", READY_WITHIN)

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.5)
                workers.watch()

        watching = asyncio.create_task(watch())
        app.state.components.register_group("intake_workers", workers.components)
        app.state.intake_workers = workers  # the analyser API asks it for the children's lines
        try:
            yield
        finally:
            app.state.components.unregister_group("intake_workers")
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await asyncio.to_thread(workers.stop)

    return run


def child_starters(settings: Settings, *, index: int, count: int) -> list[Starter]:
    """What a child runs: its share of the analysers and the shared HL7 listener; no jobs."""
    roles = settings.role_set()
    starters: list[Starter] = []
    if "instruments" in roles:
        starters.append(instruments.runtime.starter(settings, share=(index, count)))
    if "hl7" in roles:
        spread = shared_listener(settings, index=index, count=count)
        starters.append(lab.hl7.runtime.listener_starter(settings, spread=spread))
    return starters


async def _run_child(settings: Settings, *, index: int, count: int) -> None:
    # As the service runs: the runtime role, which cannot erase history (migration 0013_trust).
    engine = make_engine(runtime_url(settings, settings.database_url or ""), pool_size=4)
    app = create_app(
        settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        starters=child_starters(settings, index=index, count=count),
    )
    stop = asyncio.Event()
    # Worker 0 stops its children with SIGTERM. Ctrl-C in a terminal reaches the whole process
    # group; the children leave it to worker 0, which must not see them gone and restart them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    path = status_path(settings, index)
    async with app.router.lifespan_context(app):
        while not stop.is_set():
            if os.getppid() != parent:  # worker 0 is gone (killed): so is this node
                log.warning("worker 0 is gone; intake worker %d stops", index)
                break
            running = getattr(app.state, "instruments", None)
            body = {
                "at": time.time(),
                "pid": os.getpid(),
                "components": app.state.components.report(),
                "instruments": {
                    name: runner.status.as_dict()
                    for name, runner in (running.runners.items() if running else ())
                },
            }
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(body, default=str))
            temporary.replace(path)  # whole files only: worker 0 never reads half a status
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY)
    engine.dispose()


def main(argv: Sequence[str]) -> int:
    """`python -m lab.intake INDEX COUNT`: one intake child, started by `lab serve`."""
    index, count = int(argv[0]), int(argv[1])
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s intake-{index} %(levelname)s %(name)s %(message)s"
    )
    settings = Settings()
    if not settings.database_url:
        raise SystemExit("an intake worker needs LAB_DATABASE_URL (lab serve sets it)")
    asyncio.run(_run_child(settings, index=index, count=count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
