"""Configuration, the archive, the profiles (property tests), order download and the runtime."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import TrafficArchive
from instruments.astm.link import Role
from instruments.astm.record_codec import build_records, parse_records
from instruments.astm.records import OrderRecord, ResultRecord, TerminatorRecord
from instruments.astm.transcript import read_transcript
from instruments.config import (
    ConfigError,
    SerialSettings,
    TcpSettings,
    load_instruments,
    parse_config,
)
from instruments.profiles import PROFILES, MeasuredResult, SpecimenOrder, get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.config import Settings
from lab.main import create_app
from lab.tables import OrderDownload
from testkit.database import ScratchDatabase
from tests.conftest import auth

from .conftest import new_specimens, running, tcp_instrument

EXAMPLE = """
[[instrument]]
name = "xn-1"
profile = "sysmex_xn"
order_download = true
[instrument.serial]
port = "/dev/ttyUSB0"
baudrate = 19200
parity = "E"
flow_control = "rtscts"
[instrument.tests]
WBC = "LPK"
HGB = "hb"

[[instrument]]
name = "c311"
profile = "cobas"
[instrument.tcp]
mode = "client"
host = "10.0.0.5"
port = 4001
"""


def test_the_configuration_file_and_the_demo_default(tmp_path: Path) -> None:
    import tomllib

    xn, c311 = parse_config(tomllib.loads(EXAMPLE))
    assert isinstance(xn.transport, SerialSettings) and xn.transport.parity == "E"
    assert xn.local_code("WBC") == "LPK" and xn.local_code("HGB") == "HB"
    assert xn.local_code("PLT") is None and xn.instrument_code("HB") == "HGB"
    assert isinstance(c311.transport, TcpSettings) and c311.transport.mode == "client"
    demo = load_instruments(Settings(demo_astm_port=5099, data_dir=tmp_path))
    assert [(c.name, c.profile, c.local_codes) for c in demo] == [("demo", "generic", True)]
    assert isinstance(demo[0].transport, TcpSettings)
    assert (demo[0].transport.host, demo[0].transport.port) == ("127.0.0.1", 5099)
    for broken, words in [
        ('[[instrument]]\nname="a"\nprofile="nope"\n[instrument.tcp]\nport=1', "unknown profile"),
        ('[[instrument]]\nname="a"\nprofile="generic"', "exactly one"),
        ('[[instrument]]\nname="a"\nprofile="generic"\nencoding="klingon"\n'
         '[instrument.tcp]\nport=1', "unknown encoding"),
        ('[[instrument]]\nname="a"\nprofile="generic"\n[instrument.serial]\nport="x"\n'
         'parity="Q"', "parity"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=words):
            parse_config(tomllib.loads(broken))
    path = tmp_path / "two.toml"
    path.write_text(EXAMPLE.replace('"c311"', '"xn-1"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="unique"):
        load_instruments(Settings(instruments_file=path, data_dir=tmp_path))


def test_the_archive_is_durable_append_only_and_a_transcript(tmp_path: Path) -> None:
    archive = TrafficArchive(tmp_path)
    archive.keep_now("xn 1/a", Role.INSTRUMENT, b"\x05", at=1_769_500_000.25)
    archive.keep_now("xn 1/a", Role.HOST, b"\x06", at=1_769_500_000.5)
    archive.keep_now("xn 1/a", Role.INSTRUMENT, b"\x021H|\\^&\xe6<\r\x03XX\r\n", at=1_769_500_001)
    archive.close()
    (path,) = (tmp_path / "xn_1_a").glob("*.astm")
    entries = read_transcript(path.read_text(encoding="ascii"))
    assert [(e.time, e.writer, e.data) for e in entries] == [
        (1_769_500_000.25, Role.INSTRUMENT, b"\x05"),
        (1_769_500_000.5, Role.HOST, b"\x06"),
        (1_769_500_001.0, Role.INSTRUMENT, b"\x021H|\\^&\xe6<\r\x03XX\r\n"),
    ]
    again = TrafficArchive(tmp_path)
    again.keep_now("xn 1/a", Role.HOST, b"\x04", at=1_769_500_002)
    again.close()
    assert len(read_transcript(path.read_text(encoding="ascii"))) == 4  # appended, not replaced


NOW = datetime(2026, 1, 27, 8, 15)
codes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-#%", min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(PROFILES)),
    st.lists(codes, min_size=1, max_size=12, unique=True),
    st.lists(st.decimals(min_value=0, max_value=10_000, places=2), min_size=1, max_size=12),
)
def test_each_profile_reads_back_what_it_writes(
    name: str, test_codes: list[str], values: list[object]
) -> None:
    profile = get_profile(name)
    order = SpecimenOrder(accession_number="2600000150", test_codes=tuple(test_codes))
    results = [
        MeasuredResult(test_code=code, value=str(value), unit="mmol/L", flags=("N",))
        for code, value in zip(test_codes, values, strict=False)
    ]
    encoding = profile.default_encoding
    for message, expected in (
        (
            profile.orders_message([order], host_name="LAB", reply_to=None, now=NOW),
            tuple(test_codes),
        ),
        (
            profile.results_message(order, results, name="SIM", now=NOW),
            tuple(r.test_code for r in results),
        ),
    ):
        records = parse_records(build_records(message, encoding=encoding), encoding=encoding)
        (order_record,) = [r for r in records if isinstance(r, OrderRecord)]
        assert order_record.specimen_id == "2600000150"
        read = tuple(profile.test_code(t) for t in order_record.tests)
        assert read == expected
        assert profile.order_tests(order_record) == read
        assert isinstance(records[-1], TerminatorRecord)
    got = [(profile.test_code(r.test), r.value) for r in records if isinstance(r, ResultRecord)]
    assert got == [(r.test_code, r.value) for r in results]


def test_orders_are_pushed_to_an_analyser_that_wants_them(
    committing_factory: sessionmaker[Session],
) -> None:
    accession = new_specimens(committing_factory, ["GLUK"])["GLUK"]
    config = tcp_instrument("pushed-to", order_download=True)

    async def scenario() -> list[object]:
        async with running(config, committing_factory) as runner:
            runner.download_interval = 0.1
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(13))
            async with analyser.on_line(await tcp.open_channel("127.0.0.1", runner.listening_port)):
                for _ in range(100):
                    if not analyser._answers.empty():
                        break
                    await asyncio.sleep(0.05)
                records = await asyncio.wait_for(analyser._answers.get(), 5)
                await asyncio.sleep(0.2)
            return list(records)

    records = asyncio.run(scenario())
    orders = [r for r in records if isinstance(r, OrderRecord)]
    mine = [o for o in orders if o.specimen_id == accession]
    assert mine and [t.code for t in mine[0].tests] == ["GLUK"]
    assert mine[0].report_type == "O" and mine[0].action_code == "N"
    with committing_factory() as session:
        row = session.scalar(
            select(OrderDownload).where(
                OrderDownload.instrument == "pushed-to",
                OrderDownload.accession_number == accession,
            )
        )
        assert row is not None and row.status == "sent" and row.test_codes == ["GLUK"]


def test_the_runtime_starts_the_lines_and_reports_them(
    committed_database: ScratchDatabase, committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    import instruments.runtime

    path = tmp_path / "instruments.toml"
    path.write_text(
        '[[instrument]]\nname = "rt-1"\nprofile = "generic"\nlocal_codes = true\n'
        '[instrument.tcp]\nmode = "server"\nport = 0\n',
        encoding="utf-8",
    )
    settings_ = Settings(
        database_url=committed_database.url, data_dir=tmp_path, instruments_file=path
    )
    app = create_app(
        settings_,
        session_factory=committing_factory,
        starters=[instruments.runtime.starter(settings_)],
    )
    with TestClient(app) as client:
        health = client.get("/healthz").json()
        assert health["components"]["instrument:rt-1"]["state"] == "up"
        listed = client.get(
            "/api/v1/instruments", headers=auth(committed_database.tokens["admin"])
        ).json()
        assert listed[0]["name"] == "rt-1" and listed[0]["running"]
        assert listed[0]["status"]["state"] == "listening"
        assert listed[0]["status"]["results_recorded"] == 0
        worklist = client.get(
            "/api/v1/instruments/rt-1/worklist",
            headers=auth(committed_database.tokens["instrument"]),
        )
        assert worklist.status_code == 200
    assert "instrument:rt-1" not in app.state.components.report()
