"""The one shape of a part that runs beside the web app: listeners, analyser links, jobs.

A starter takes the app and returns an async context manager; `lab.main.create_app` enters
each one when the app starts and leaves them in reverse order when it stops. It lives on the
ground floor so each feature can offer its part without importing the composition root.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

Starter = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def repeated(
    app: FastAPI,
    *,
    name: str,
    every: float,
    work: Callable[[], None],
    status: Callable[[], dict[str, Any]],
) -> AsyncIterator[None]:
    """While the block runs: `work` in a worker thread at once and then `every` seconds after
    each round ends (it handles its own errors), and `status` on `/healthz` as `name`."""

    async def loop() -> None:
        while True:
            await asyncio.to_thread(work)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    app.state.components.register(name, status)
    try:
        yield
    finally:
        app.state.components.unregister(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
