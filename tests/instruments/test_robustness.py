"""Failures stay where they happen: one analyser's broken line does not disturb another's; a
database failure is answered with NAK so the analyser sends again; line noise loses nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from instruments.config import InstrumentConfig, SerialSettings
from instruments.messages import MessageOutcome
from instruments.profiles import Profile, get_profile
from instruments.runner import LabGateway
from instruments.simulator import SpecimenRun, VirtualAnalyser
from instruments.transports import tcp

from .conftest import new_specimens, running, tcp_instrument
from .test_conversation import check_recorded, results_of


def test_a_broken_line_does_not_disturb_another_analyser(
    committing_factory: sessionmaker[Session],
) -> None:
    tubes = new_specimens(committing_factory, ["HB", "NA"])
    broken = tcp_instrument("broken-line")
    healthy = tcp_instrument("healthy-line")
    absent = tcp_instrument(
        "absent-port",
        transport=SerialSettings(port="/dev/no-such-analyser", reopen_initial=0.05),
    )

    async def vandal(port: int) -> None:
        # garbage, then a frame that never ends, then the peer vanishes
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\xff garbage \x06\x15\x04")
        writer.write(b"\x05")
        await writer.drain()
        assert await reader.read(1) == b"\x06"
        writer.write(b"\x021H|\\^&|||half a fra")
        await writer.drain()
        writer.transport.abort()

    async def scenario() -> tuple[list[SpecimenRun], list[SpecimenRun], dict[str, object]]:
        async with (
            running(broken, committing_factory) as first,
            running(healthy, committing_factory) as second,
            running(absent, committing_factory) as third,
        ):
            assert first.listening_port and second.listening_port
            analyser = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(7))
            channel = await tcp.open_channel("127.0.0.1", second.listening_port)
            runs, _ = await asyncio.gather(
                analyser.run(channel, [tubes["HB"]]), vandal(first.listening_port)
            )
            await asyncio.sleep(0.2)
            assert first.status.state == "listening" and first.status.connections == 0
            assert third.status.state == "waiting" and "no-such-analyser" in third.status.last_error
            # the broken line's analyser comes back and is served as usual
            again = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(8))
            channel = await tcp.open_channel("127.0.0.1", first.listening_port)
            later = await again.run(channel, [tubes["NA"]])
            return runs, later, third.status.health()

    runs, later, absent_health = asyncio.run(scenario())
    check_recorded(committing_factory, runs[0], "healthy-line")
    check_recorded(committing_factory, later[0], "broken-line")
    assert absent_health["state"] == "up"  # waiting for its port is not an error of the module


class FlakyGateway(LabGateway):
    """The database is down for the first `failures` messages."""

    def __init__(self, factory: sessionmaker[Session], failures: int) -> None:
        super().__init__(factory)
        self.failures = failures

    def handle(
        self, instrument: InstrumentConfig, profile: Profile, raws: Sequence[bytes]
    ) -> MessageOutcome:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return super().handle(instrument, profile, raws)


def test_database_down_means_nak_and_the_analyser_sends_again(
    committing_factory: sessionmaker[Session],
) -> None:
    tubes = new_specimens(committing_factory, ["KREA", "CRP"])
    gateway = FlakyGateway(committing_factory, failures=2)

    async def scenario() -> tuple[list[SpecimenRun], dict[str, object]]:
        config = tcp_instrument("flaky-db")
        async with running(config, committing_factory, gateway=gateway) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(9))
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            runs = await analyser.run(channel, [tubes["KREA"]], query=False, tests=["KREA", "CRP"])
            return runs, runner.status.as_dict()

    runs, status = asyncio.run(scenario())
    check_recorded(committing_factory, runs[0], "flaky-db")
    assert status["errors"] == 2 and status["results_recorded"] == 2
    assert gateway.failures == 0


def test_line_noise_every_result_arrives_or_is_visibly_not_accepted(
    committing_factory: sessionmaker[Session],
) -> None:
    tubes = [new_specimens(committing_factory, ["HB", "LPK", "TPK"])["HB"] for _ in range(8)]

    async def scenario() -> tuple[list[SpecimenRun], int, int, dict[str, object]]:
        async with running(tcp_instrument("noisy-line"), committing_factory) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(
                profile=get_profile("generic"), rng=random.Random(11), noise=0.01
            )
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            runs = await analyser.run(channel, tubes)
            assert analyser.noisy is not None
            return runs, analyser.noisy.corrupted, analyser.noisy.acks_lost, runner.status.as_dict()

    runs, corrupted, acks_lost, status = asyncio.run(scenario())
    assert corrupted > 0 and acks_lost > 0  # the noise really happened
    assert status["frames_rejected"] > 0
    for run in runs:
        assert run.outcome in ("accepted", "not accepted", "no answer")
        stored = results_of(committing_factory, run.accession_number)
        if run.outcome == "accepted":
            check_recorded(committing_factory, run, "noisy-line")
        for code, result in stored.items():  # nothing stored that was not sent as sent
            sent = {r.test_code: r.value for r in run.sent}
            assert result.value_numeric == Decimal(sent[code])
    assert sum(run.outcome == "accepted" for run in runs) >= 6
