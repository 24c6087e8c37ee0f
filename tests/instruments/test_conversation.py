"""Our host side and our virtual analyser over real TCP (both modes) and a real pseudo-terminal,
ending with results in the database: flagged, awaiting review; host queries answered."""

from __future__ import annotations

import asyncio
import random
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.transcript import read_transcript
from instruments.config import SerialSettings, TcpSettings
from instruments.profiles import SpecimenOrder, get_profile
from instruments.simulator import SpecimenRun, VirtualAnalyser
from instruments.transports import serial as serial_transport
from instruments.transports import tcp
from lab.specimens import service as specimens
from lab.tables import LabTest, Result
from testkit.serial import socat_available, socat_pair

from .conftest import new_specimens, running, tcp_instrument


def results_of(factory: sessionmaker[Session], accession: str) -> dict[str, Result]:
    with factory() as session:
        specimen = specimens.get_by_accession(session, accession)
        ids = [t.id for t in specimens.tests_of(session, specimen)]
        rows = session.scalars(select(Result).where(Result.ordered_test_id.in_(ids))).all()
        found = {}
        for row in rows:
            _ = row.versions  # load before the session closes
            found[session.get_one(LabTest, row.test_id).code] = row
        return found


def check_recorded(factory: sessionmaker[Session], run: SpecimenRun, analyser: str) -> None:
    assert run.outcome == "accepted", run
    stored = results_of(factory, run.accession_number)
    for sent in run.sent:
        result = stored[sent.test_code]
        assert result.status == "awaiting_review"
        assert result.value_numeric == Decimal(sent.value)
        assert result.unit == sent.unit
        version = result.versions[-1]
        assert version.instrument.startswith(analyser)
        assert version.operator == "sim"
        assert version.instrument_flags == sent.flags[0]  # R-7 kept as the analyser sent it
        assert result.observed_at is not None
        if sent.flags == ("H",):
            assert {"H", "HH"} & set(result.flags)
        if sent.flags == ("L",):
            assert {"L", "LL"} & set(result.flags)


def test_tcp_server_mode_query_results_and_repeat(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    tubes = new_specimens(committing_factory, ["HB", "LPK", "NA", "K"])
    edta, serum = tubes["HB"], tubes["NA"]

    async def scenario() -> tuple[list[SpecimenRun], bool, dict[str, object]]:
        async with running(tcp_instrument("tcp-server"), committing_factory, tmp_path) as runner:
            port = runner.listening_port
            assert port is not None
            analyser = VirtualAnalyser(
                profile=get_profile("generic"), name="XS1", rng=random.Random(1)
            )
            channel = await tcp.open_channel("127.0.0.1", port)
            runs = await analyser.run(channel, [edta, serum, "2699999990"])
            await channel.close()  # one live connection per analyser: the first must end
            for _ in range(100):
                if runner.status.connections == 0:
                    break
                await asyncio.sleep(0.02)
            # The same results once more, on a new connection (as after a lost final ACK).
            first = runs[0]
            order = SpecimenOrder(accession_number=edta, test_codes=first.ordered)
            assert first.sent[0].completed_at is not None
            message = analyser.profile.results_message(
                order, first.sent, name="XS1", now=first.sent[0].completed_at
            )
            async with analyser.on_line(await tcp.open_channel("127.0.0.1", port)):
                delivered = await analyser.send(message)
            await asyncio.sleep(0.05)
            return runs, delivered, runner.status.as_dict()

    runs, delivered, status = asyncio.run(scenario())
    assert [r.outcome for r in runs] == ["accepted", "accepted", "no order"]
    assert set(runs[0].ordered) == {"HB", "LPK"} and set(runs[1].ordered) == {"NA", "K"}
    for run in runs[:2]:
        check_recorded(committing_factory, run, "tcp-server")
    assert delivered
    assert status["results_recorded"] == 4
    assert status["results_repeated"] == 2
    assert status["queries_answered"] == 3
    assert status["unmatched"] == 0
    assert all(r.version == 1 for r in results_of(committing_factory, edta).values())
    archived = list((tmp_path / "tcp-server").glob("*.astm"))
    assert len(archived) == 1
    entries = read_transcript(archived[0].read_text(encoding="ascii"))
    assert any(edta.encode() in entry.data for entry in entries)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_tcp_client_mode_connects_out_and_reconnects(
    committing_factory: sessionmaker[Session],
) -> None:
    tubes = new_specimens(committing_factory, ["CRP", "GLUK"])
    serum = tubes["CRP"]
    port = free_port()
    config = tcp_instrument(
        "tcp-client",
        transport=TcpSettings(
            mode="client", host="127.0.0.1", port=port, reconnect_initial=0.1, reconnect_max=0.2
        ),
    )

    async def scenario() -> tuple[list[SpecimenRun], dict[str, object]]:
        from instruments.cli import wait_for_host

        async with running(config, committing_factory) as runner:
            await asyncio.sleep(0.3)  # nobody listens yet: the runner waits and tries again
            assert runner.status.errors >= 1
            channel = await asyncio.wait_for(wait_for_host("127.0.0.1", port), 10)
            analyser = VirtualAnalyser(profile=get_profile("sysmex_xn"), rng=random.Random(2))
            runs = await analyser.run(channel, [serum])
            return runs, runner.status.as_dict()

    runs, status = asyncio.run(scenario())
    assert runs[0].outcome == "accepted"
    check_recorded(committing_factory, runs[0], "tcp-client")
    assert status["results_recorded"] == 2


@pytest.mark.skipif(not socat_available(), reason="socat is not installed")
def test_serial_line_over_a_pseudo_terminal_pair(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    tubes = new_specimens(committing_factory, ["NA", "K", "KREA"])
    serum = tubes["NA"]
    with socat_pair(tmp_path) as (host_end, analyser_end):
        config = tcp_instrument(
            "serial-1",
            profile="cobas",
            local_codes=False,
            tests={"989": "NA", "990": "K", "767": "KREA"},
            transport=SerialSettings(port=str(host_end), baudrate=9600),
        )

        async def scenario() -> tuple[list[SpecimenRun], dict[str, object]]:
            async with running(config, committing_factory) as runner:
                channel = await serial_transport.open_channel(
                    SerialSettings(port=str(analyser_end), baudrate=9600)
                )
                analyser = VirtualAnalyser(
                    profile=get_profile("cobas"),
                    to_local=config.local_code,
                    rng=random.Random(3),
                )
                runs = await analyser.run(channel, [serum])
                return runs, runner.status.as_dict()

        runs, status = asyncio.run(scenario())
    assert runs[0].outcome == "accepted"
    assert set(runs[0].ordered) == {"989", "990", "767"}
    stored = results_of(committing_factory, serum)
    assert {code: str(stored[code].value_numeric) for code in ("NA", "K", "KREA")} == {
        config.local_code(r.test_code): r.value for r in runs[0].sent
    }
    assert all(r.status == "awaiting_review" for r in stored.values())
    assert status["results_recorded"] == 3
