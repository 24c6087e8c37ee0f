"""Fixtures of the analyser tests: a committing session factory, specimens, a running host.

Socket and serial tests run the host in its own event loop and threads, committing for real, so
they use their own engine (not the rolled-back `db` session) and unique placer numbers.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import TrafficArchive
from instruments.config import InstrumentConfig, TcpSettings
from instruments.runner import InstrumentRunner, LabGateway
from lab.db import make_engine, make_session_factory, transaction
from testkit.database import ScratchDatabase
from testkit.orders import place_and_receive
from tests.conftest import actor

TECHNICIAN = actor("technician")


@pytest.fixture(scope="session")
def committing_engine(committed_database: ScratchDatabase) -> Iterator[Engine]:
    engine = make_engine(committed_database.runtime_url, pool_size=8)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def committing_factory(committing_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(committing_engine)


def new_specimens(
    factory: sessionmaker[Session], tests: list[str], *, receive: bool = True
) -> dict[str, str]:
    """Place an order for `tests` and receive its tubes; {test code: accession number}."""
    with transaction(factory) as session:
        return place_and_receive(
            session, TECHNICIAN, placer=f"INS{secrets.token_hex(5)}", tests=tests, receive=receive
        )


def tcp_instrument(name: str, **changes: object) -> InstrumentConfig:
    config = InstrumentConfig(
        name=name,
        profile="generic",
        transport=TcpSettings(mode="server", host="127.0.0.1", port=0),
        local_codes=True,
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def running(
    config: InstrumentConfig,
    factory: sessionmaker[Session],
    archive_dir: Path | None = None,
    *,
    gateway: LabGateway | None = None,
) -> AsyncIterator[InstrumentRunner]:
    archive = TrafficArchive(archive_dir) if archive_dir is not None else None
    runner = InstrumentRunner(config, gateway=gateway or LabGateway(factory), archive=archive)
    await runner.start()
    for _ in range(200):
        if runner.listening_port is not None or not isinstance(config.transport, TcpSettings):
            break
        if config.transport.mode == "client":
            break
        await asyncio.sleep(0.01)
    try:
        yield runner
    finally:
        await runner.stop()
        if archive is not None:
            archive.close()
