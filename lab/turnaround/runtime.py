"""The archive indexer at run time: a loop in the app lifespan of a node running analysers.

`lab serve` starts it with the analysers (role `instruments`). It reads only this node's
archive, and only what was appended since its last round, every `every` seconds in a worker
thread. Two nodes never read the same files (each analyser runs on one node), and a timing
read twice is stored once, so no lock is needed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from lab.config import Settings
from lab.lifespan import Starter, repeated
from lab.turnaround.service import ArchiveIndexer

log = logging.getLogger(__name__)


def starter(settings: Settings, *, every: float = 2.0) -> Starter:
    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        indexer = ArchiveIndexer(settings.data_dir / "archive", app.state.session_factory)

        def index_now() -> None:
            try:
                indexer.run_once()
            except Exception as error:  # the database may be away; try again next round
                indexer.stats.last_error = f"{type(error).__name__}: {error}"[:300]
                log.warning("turnaround indexer: %s", indexer.stats.last_error)

        def status() -> dict[str, Any]:
            return {
                "state": "up",
                "messages_indexed": indexer.stats.messages,
                "last_error": indexer.stats.last_error,
            }

        app.state.turnaround_indexer = indexer
        async with repeated(
            app, name="turnaround_indexer", every=every, work=index_now, status=status
        ):
            yield

    return run
