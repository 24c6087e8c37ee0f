"""Starts every configured analyser in the app's lifespan and stops them cleanly.

`lab serve` passes `starter(settings)` to `create_app`. The runners are kept in
`app.state.instruments` (for `GET /api/v1/instruments`) and each one's status is registered with
`app.state.components` as `instrument:<name>` (for `/healthz`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from instruments.archive import TrafficArchive
from instruments.config import InstrumentConfig, load_instruments
from instruments.runner import InstrumentRunner, LabGateway
from lab.config import Settings
from lab.lifespan import Starter

log = logging.getLogger(__name__)


class Instruments:
    """The running analysers of one app, by name."""

    def __init__(self, runners: list[InstrumentRunner]) -> None:
        self.runners = {runner.instrument.name: runner for runner in runners}

    def configs(self) -> list[InstrumentConfig]:
        return [runner.instrument for runner in self.runners.values()]


def starter(settings: Settings) -> Starter:
    def start(app: FastAPI) -> AbstractAsyncContextManager[None]:
        return run_instruments(app, settings)

    return start


@asynccontextmanager
async def run_instruments(
    app: FastAPI, settings: Settings, configs: list[InstrumentConfig] | None = None
) -> AsyncIterator[None]:
    configs = load_instruments(settings) if configs is None else configs
    archive = TrafficArchive(settings.data_dir / "archive")
    gateway = LabGateway(app.state.session_factory)
    runners = [InstrumentRunner(config, gateway=gateway, archive=archive) for config in configs]
    app.state.instruments = Instruments(runners)
    components = app.state.components
    for runner in runners:
        components.register(f"instrument:{runner.instrument.name}", runner.status.health)
        await runner.start()
        log.info("analyser %s: %s", runner.instrument.name, runner.status.transport)
    try:
        yield
    finally:
        for runner in runners:
            await runner.stop()
            components.unregister(f"instrument:{runner.instrument.name}")
        archive.close()
