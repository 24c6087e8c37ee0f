"""The patient-based QC check on a schedule (APScheduler), started by `lab serve`.

Every `every` seconds `lab.qc.moving_alarms.check` looks at each test and analyser with a moving
setting and stores an alarm when the moving statistic has drifted out of its control limits (or
clears it when it is back). Off the recording path: recording a result costs nothing for it; an
alarm is stored within `every` seconds of the result that caused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from lab.db import transaction
from lab.lifespan import Starter
from lab.qc import moving_alarms
from lab.timeutil import utcnow

log = logging.getLogger(__name__)


def check_once(factory: sessionmaker[Session]) -> int:
    """One check in its own transaction; the number of alarms raised or cleared."""
    with transaction(factory) as session:
        return len(moving_alarms.check(session, now=utcnow()))


def starter(*, every: float = 60.0) -> Starter:
    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        factory: sessionmaker[Session] = app.state.session_factory
        state: dict[str, Any] = {"checks": 0, "changes": 0, "last_error": ""}

        async def job() -> None:
            try:
                state["changes"] += await asyncio.to_thread(check_once, factory)
                state["checks"] += 1
            except Exception as error:  # the database may be away; try again next round
                state["last_error"] = type(error).__name__
                log.warning("patient-based QC check failed: %s", type(error).__name__)

        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(
            job, "interval", seconds=every, id="qc_moving", max_instances=1, coalesce=True
        )
        scheduler.start()
        app.state.components.register("qc_moving", lambda: {"state": "up", **state})
        try:
            yield
        finally:
            app.state.components.unregister("qc_moving")
            scheduler.shutdown(wait=False)

    return run
