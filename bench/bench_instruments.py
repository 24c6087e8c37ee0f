"""Results per second committed from virtual analysers over TCP: one analyser, then four at once.

Runs against its own fresh database (bench/__init__.py: made, migrated and seeded, and dropped
at the end). Each virtual analyser
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
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench import bench_database
from instruments.archive import TrafficArchive
from instruments.config import InstrumentConfig, TcpSettings
from instruments.messages import MessageOutcome
from instruments.profiles import Profile, get_profile
from instruments.runner import InstrumentRunner, LabGateway
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.audit import Actor
from lab.db import make_engine, make_session_factory, transaction
from lab.results import service as results
from testkit.orders import place_and_receive
from testkit.patients import SyntheticPatient, national_number

TESTS = ["NA", "K", "KREA", "CRP", "GLUK"]
PER_ANALYSER = int(os.environ.get("BENCH_SPECIMENS", "150"))
ACTOR = Actor(user_id=None, username="bench", roles=frozenset({"technician"}), channel="cli")


PATIENT = SyntheticPatient(
    fnr=national_number(date(1984, 3, 15), 100), family="Benk", given="Kari"
).demographics()


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
    """`count` received tubes, each of an order of its own for TESTS (one SERUM tube)."""
    made: list[str] = []
    while len(made) < count:
        with transaction(factory) as session:
            for _ in range(min(50, count - len(made))):
                tubes = place_and_receive(
                    session, ACTOR, placer=f"B{secrets.token_hex(6)}", tests=TESTS, patient=PATIENT
                )
                made.append(tubes[TESTS[0]])
    return made


async def play(
    factory: sessionmaker[Session], groups: list[list[str]], archive_dir: Path
) -> tuple[float, int]:
    # One runner (one port) per analyser: a server-mode analyser has one live connection.
    archive = TrafficArchive(archive_dir)
    gateway = TimedGateway(factory)
    runners = [
        InstrumentRunner(
            InstrumentConfig(
                name=f"bench-{number}",
                profile="generic",
                transport=TcpSettings(mode="server", host="127.0.0.1", port=0),
                local_codes=True,
            ),
            gateway=gateway,
            archive=archive,
        )
        for number in range(len(groups))
    ]
    for runner in runners:
        await runner.start()
        while runner.listening_port is None:
            await asyncio.sleep(0.01)

    async def one(number: int, accessions: list[str]) -> int:
        analyser = VirtualAnalyser(
            profile=get_profile("generic"), name=f"SIM-{number}", rng=random.Random(number)
        )
        port = runners[number].listening_port
        assert port is not None
        channel = await tcp.open_channel("127.0.0.1", port)
        runs = await analyser.run(channel, accessions, query=False, tests=TESTS)
        return sum(len(run.sent) for run in runs if run.outcome == "accepted")

    started = time.perf_counter()
    sent = await asyncio.gather(*(one(n, group) for n, group in enumerate(groups)))
    elapsed = time.perf_counter() - started
    recorded = sum(runner.status.results_recorded for runner in runners)
    for runner in runners:
        await runner.stop()
    archive.close()
    if recorded != sum(sent):
        print(f"  warning: {sum(sent)} results acknowledged but {recorded} recorded")
    return elapsed, recorded


def main() -> None:
    with bench_database("instruments") as url:
        engine = make_engine(url, pool_size=8)
        try:
            factory = make_session_factory(engine)
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


if __name__ == "__main__":
    main()
