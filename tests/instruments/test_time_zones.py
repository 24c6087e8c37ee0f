"""Every timestamp we send an analyser is on its wall clock (its configured time zone; the demo
analyser's is Europe/Oslo), and every one it sends is read in that zone, across the changes to
and from summer time. LIS2-A2 timestamps carry no zone (5.6.2)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.errors import LocalProtocolError
from instruments.astm.record_codec import parse_records
from instruments.astm.records import HeaderRecord, OrderRecord
from instruments.config import InstrumentConfig, TcpSettings
from instruments.profiles import get_profile
from instruments.service import orders_to_download
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.db import transaction
from lab.tables import Specimen
from testkit.orders import place_and_receive
from tests.conftest import actor

from .conftest import new_specimens, running, tcp_instrument
from .test_conversation import results_of
from .test_dialects import send_messages

OSLO = ZoneInfo("Europe/Oslo")
DEMO = InstrumentConfig(
    name="demo", profile="generic", transport=TcpSettings(mode="server", port=0), local_codes=True
)

# Europe/Oslo in 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
AROUND_THE_CHANGES = [
    (datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, 59, 59)),
    (datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, 0)),
    (datetime(2026, 10, 25, 0, 30, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, 0)),
    (datetime(2026, 10, 25, 1, 30, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, 0)),
    (datetime(2026, 12, 1, 23, 30, 0, tzinfo=UTC), datetime(2026, 12, 2, 0, 30, 0)),
]


@pytest.mark.parametrize(("moment", "shown"), AROUND_THE_CHANGES)
def test_what_we_send_is_on_the_analysers_wall_clock(moment: datetime, shown: datetime) -> None:
    assert DEMO.wall_clock(moment) == shown
    assert DEMO.wall_clock(moment.replace(tzinfo=None)) == shown  # naive: stored UTC


def test_what_the_analyser_sends_is_read_in_its_zone() -> None:
    read = DEMO.read_clock
    assert read(datetime(2026, 3, 29, 1, 59, 59)) == datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)
    assert read(datetime(2026, 3, 29, 3, 0, 0)) == datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC)
    # 02:30 on 25 October happens twice: the first (summer time) is taken.
    assert read(datetime(2026, 10, 25, 2, 30)) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert read(datetime(2026, 7, 1, 12, 0)) == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    tokyo = InstrumentConfig(
        name="t", profile="generic", transport=DEMO.transport, timezone="Asia/Tokyo"
    )
    assert tokyo.read_clock(datetime(2026, 7, 1, 12, 0)) == datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["Europe/Oslo", "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
@example(moment=datetime(2026, 10, 25, 1, 30, tzinfo=UTC), zone="Europe/Oslo")  # repeats
@example(moment=datetime(2026, 10, 25, 0, 30, tzinfo=UTC), zone="Europe/Oslo")
@example(moment=datetime(2026, 3, 29, 1, 0, tzinfo=UTC), zone="Europe/Oslo")
def test_a_moment_sent_and_read_back_is_the_same_but_in_the_hour_that_repeats(
    moment: datetime, zone: str
) -> None:
    config = InstrumentConfig(name="z", profile="generic", transport=DEMO.transport, timezone=zone)
    shown = config.wall_clock(moment)
    assert shown.tzinfo is None
    back = config.read_clock(shown)
    assert back is not None
    if back != moment:
        # Only a wall-clock time that happens twice may be read as its other occurrence.
        assert shown.replace(tzinfo=ZoneInfo(zone), fold=1).astimezone(UTC) == moment
        assert abs(back - moment) <= timedelta(hours=1)


def test_the_codec_refuses_a_time_with_a_zone() -> None:
    with pytest.raises(LocalProtocolError, match="local time"):
        OrderRecord.create(specimen_id="X", collected_at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(LocalProtocolError):
        HeaderRecord.create(timestamp=datetime.now(UTC))


def _collected(factory: sessionmaker[Session], accession: str, moment: datetime) -> None:
    with transaction(factory) as session:
        session.execute(
            update(Specimen)
            .where(Specimen.accession_number == accession)
            .values(collected_at=moment)
        )


def test_a_query_answer_over_tcp_gives_h14_and_o8_in_the_analysers_zone(
    committing_factory: sessionmaker[Session],
) -> None:
    autumn = new_specimens(committing_factory, ["CRP"])["CRP"]
    spring = new_specimens(committing_factory, ["CRP"])["CRP"]
    _collected(committing_factory, autumn, datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    _collected(committing_factory, spring, datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    profile = get_profile("generic")

    async def scenario() -> list[list[object]]:
        async with running(tcp_instrument(f"tz-{secrets.token_hex(3)}"), committing_factory) as r:
            assert r.listening_port is not None
            analyser = VirtualAnalyser(profile=profile, name="TZ")
            channel = await tcp.open_channel("127.0.0.1", r.listening_port)
            answers = []
            async with analyser.on_line(channel):
                for accession in (autumn, spring):
                    now = datetime.now(OSLO).replace(tzinfo=None, microsecond=0)
                    answer = await analyser.exchange(
                        profile.query_message(accession, name="TZ", now=now)
                    )
                    assert answer is not None
                    answers.append(list(answer))
            return answers

    before = datetime.now(UTC)
    autumn_answer, spring_answer = asyncio.run(scenario())
    after = datetime.now(UTC)
    for answer, o8 in ((autumn_answer, "20261025023000"), (spring_answer, "20260329030000")):
        header = next(r for r in answer if isinstance(r, HeaderRecord))
        order = next(r for r in answer if isinstance(r, OrderRecord))
        assert order.text(8) == o8
        sent_at = header.timestamp(14)
        assert sent_at is not None
        # H-14 is Oslo's wall clock: between the Oslo times before and after the exchange.
        low = before.astimezone(OSLO).replace(tzinfo=None, microsecond=0)
        high = after.astimezone(OSLO).replace(tzinfo=None)
        assert low <= sent_at <= high


def test_an_order_download_gives_o8_in_the_analysers_zone(db: Session) -> None:
    tubes = place_and_receive(
        db, actor("technician"), placer=f"TZ{secrets.token_hex(4)}", tests=["HB"], receive=True
    )
    db.execute(
        update(Specimen)
        .where(Specimen.accession_number == tubes["HB"])
        .values(collected_at=datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    )
    orders = orders_to_download(db, instrument=DEMO, limit=500)
    (order,) = [o for o in orders if o.accession_number == tubes["HB"]]
    assert order.collected_at == datetime(2026, 10, 25, 2, 30)
    records = get_profile("generic").orders_message(
        [order], host_name="LAB", reply_to=None, now=DEMO.wall_clock(datetime.now(UTC))
    )
    assert next(r for r in records if isinstance(r, OrderRecord)).text(8) == "20261025023000"


def test_results_sent_around_the_change_are_read_in_the_analysers_zone(
    committing_factory: sessionmaker[Session],
) -> None:
    tubes = new_specimens(committing_factory, ["NA", "K"])
    serum = tubes["NA"]
    lines = [
        "H|\\^&|||GEN^1|||||||P|LIS2-A2|20261025033000",
        "P|1",
        f"O|1|{serum}||^^^NA\\^^^K|R||||||N||||||||||||||F",
        "R|1|^^^NA|140|mmol/L||N||F||||20261025013000",  # 01:30 summer time
        "R|2|^^^K|4.0|mmol/L||N||F||||20261025033000",  # 03:30 winter time
        "L|1|N",
    ]
    config = tcp_instrument(f"tz-{secrets.token_hex(3)}")
    assert send_messages(committing_factory, config, [lines]) == [True]
    stored = results_of(committing_factory, serum)
    assert stored["NA"].observed_at == datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    assert stored["K"].observed_at == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)
    assert parse_records([line.encode() for line in lines])  # the lines are well formed
