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

    def __init__(
        self, runners: list[InstrumentRunner], configs: list[InstrumentConfig] | None = None
    ) -> None:
        self.runners = {runner.instrument.name: runner for runner in runners}
        # Every configured analyser, also those an intake child runs (lab/intake.py).
        self._configs = configs if configs is not None else [r.instrument for r in runners]

    def configs(self) -> list[InstrumentConfig]:
        return list(self._configs)


def starter(settings: Settings, *, share: tuple[int, int] = (0, 1)) -> Starter:
    """Runs the configured analysers; with `share=(k, n)` only those of intake worker k of n
    (analyser i of the instruments file runs in worker i mod n, see lab/intake.py)."""

    def start(app: FastAPI) -> AbstractAsyncContextManager[None]:
        return run_instruments(app, settings, share=share)

    return start


@asynccontextmanager
async def run_instruments(
    app: FastAPI,
    settings: Settings,
    configs: list[InstrumentConfig] | None = None,
    *,
    share: tuple[int, int] = (0, 1),
) -> AsyncIterator[None]:
    configs = load_instruments(settings) if configs is None else configs
    index, count = share
    mine = [config for place, config in enumerate(configs) if place % count == index]
    archive = TrafficArchive(
        settings.data_dir / "archive",
        daily_quota_bytes=settings.astm_archive_daily_mb * 1024 * 1024,
    )
    gateway = LabGateway(app.state.session_factory)
    runners = [InstrumentRunner(config, gateway=gateway, archive=archive) for config in mine]
    app.state.instruments = Instruments(runners, configs)
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
