"""Results per second committed from virtual analysers over TCP: one analyser, then four at once.

Runs against its own fresh database on the machine's PostgreSQL (`LAB_TEST_DATABASE_URL` or
127.0.0.1:5432), made, migrated and seeded here and dropped at the end. Each virtual analyser
sends one message per specimen (H, P, O, five R, L; one transaction per message, commit before
the ACK) over a real TCP connection to an `InstrumentRunner`, with the raw archive fsynced.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import TrafficArchive
from instruments.config import InstrumentConfig, TcpSettings
from instruments.messages import MessageOutcome
from instruments.profiles import Profile, get_profile
from instruments.runner import InstrumentRunner, LabGateway
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.audit import Actor
from lab.db import make_engine, make_session_factory, to_psycopg_url, transaction
from lab.demo import seed
from lab.migrate import upgrade
from lab.orders import service as orders
from lab.patients.identifiers import check_digits
from lab.patients.service import Demographics, IdentifierInput
from lab.results import service as results
from lab.specimens import service as specimens

SERVER = to_psycopg_url(
    os.environ.get("LAB_TEST_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TESTS = ["NA", "K", "KREA", "CRP", "GLUK"]
PER_ANALYSER = int(os.environ.get("BENCH_SPECIMENS", "150"))
ACTOR = Actor(user_id=None, username="bench", roles=frozenset({"technician"}), channel="cli")


def _fodselsnummer(first_six: str) -> str:
    for individual in range(100, 500):
        digits = check_digits(f"{first_six}{individual:03d}")
        if digits is not None:
            return f"{first_six}{individual:03d}{digits[0]}{digits[1]}"
    raise ValueError("no valid number")


PATIENT = Demographics(
    identifiers=[IdentifierInput(value=_fodselsnummer("150384"), authority="FNR")],
    family_name="Benk",
    given_name="Kari",
    sex="F",
)


class TimedGateway(LabGateway):
    """Counts the time spent in the message transactions and inside results.record_tube."""

    handle_seconds = 0.0
    record_seconds = 0.0
    records = 0

    def handle(
        self, instrument: InstrumentConfig, profile: Profile, raws: Sequence[bytes]
    ) -> MessageOutcome:
        started = time.perf_counter()
        try:
            return super().handle(instrument, profile, raws)
        finally:
            TimedGateway.handle_seconds += time.perf_counter() - started


def _timed_record() -> None:
    original = results.record_tube

    def record_tube(session: Session, **kwargs: Any) -> list[results.Outcome]:
        started = time.perf_counter()
        try:
            outcomes = original(session, **kwargs)
        finally:
            TimedGateway.record_seconds += time.perf_counter() - started
        TimedGateway.records += len(outcomes)
        return outcomes

    results.record_tube = record_tube  # type: ignore[assignment]


def make_specimens(factory: sessionmaker[Session], count: int) -> list[str]:
    made: list[str] = []
    while len(made) < count:
        with transaction(factory) as session:
            for _ in range(min(50, count - len(made))):
                order = orders.place(
                    session,
                    actor=ACTOR,
                    request=orders.OrderRequest(
                        patient=PATIENT,
                        placer_order_number=f"B{secrets.token_hex(6)}",
                        placer_namespace="HP",
                        tests=[orders.TestRequest(code=code) for code in TESTS],
                        ordering_clinician="12345^Lege^Lise",
                        ordering_location="MED3",
                    ),
                )
                (tube,) = specimens.tubes_of_order(session, order.id)
                specimens.receive(session, actor=ACTOR, number=tube.accession_number)
                made.append(tube.accession_number)
    return made


async def play(
    factory: sessionmaker[Session], groups: list[list[str]], archive_dir: Path
) -> tuple[float, int]:
    config = InstrumentConfig(
        name="bench",
        profile="generic",
        transport=TcpSettings(mode="server", host="127.0.0.1", port=0),
        local_codes=True,
    )
    archive = TrafficArchive(archive_dir)
    runner = InstrumentRunner(config, gateway=TimedGateway(factory), archive=archive)
    await runner.start()
    while runner.listening_port is None:
        await asyncio.sleep(0.01)
    port = runner.listening_port

    async def one(number: int, accessions: list[str]) -> int:
        analyser = VirtualAnalyser(
            profile=get_profile("generic"), name=f"SIM-{number}", rng=random.Random(number)
        )
        channel = await tcp.open_channel("127.0.0.1", port)
        runs = await analyser.run(channel, accessions, query=False, tests=TESTS)
        return sum(len(run.sent) for run in runs if run.outcome == "accepted")

    started = time.perf_counter()
    sent = await asyncio.gather(*(one(n, group) for n, group in enumerate(groups)))
    elapsed = time.perf_counter() - started
    recorded = runner.status.results_recorded
    await runner.stop()
    archive.close()
    if recorded != sum(sent):
        print(f"  warning: {sum(sent)} results acknowledged but {recorded} recorded")
    return elapsed, recorded


def main() -> None:
    name = f"lab_bench_instr_{secrets.token_hex(3)}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(SERVER).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=8)
    try:
        upgrade(url)
        factory = make_session_factory(engine)
        with transaction(factory) as session:
            seed(session, password="bench password")
        print(f"placing {PER_ANALYSER * 5} orders (one SERUM tube, {len(TESTS)} tests each)...")
        accessions = make_specimens(factory, PER_ANALYSER * 5)
        _timed_record()
        with tempfile.TemporaryDirectory() as archive_dir:
            for label, groups in (
                ("1 analyser ", [accessions[:PER_ANALYSER]]),
                ("4 analysers", [accessions[PER_ANALYSER * (i + 1) : PER_ANALYSER * (i + 2)]
                                 for i in range(4)]),
            ):  # fmt: skip
                TimedGateway.handle_seconds = TimedGateway.record_seconds = 0.0
                TimedGateway.records = 0
                elapsed, recorded = asyncio.run(play(factory, groups, Path(archive_dir)))
                messages = sum(len(g) for g in groups)
                print(
                    f"{label}: {recorded / elapsed:7.0f} results/s committed "
                    f"({recorded} results in {messages} messages, {elapsed:.1f} s)"
                )
                per_message = TimedGateway.handle_seconds / messages * 1000
                per_result = TimedGateway.record_seconds / max(1, TimedGateway.records) * 1000
                print(
                    f"    {per_message:.1f} ms per message transaction, of which "
                    f"{per_result:.2f} ms per result inside results.record_tube "
                    "(wall time in threads)"
                )
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
