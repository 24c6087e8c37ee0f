"""Captured transcripts (tests/data/astm, and our own archive files) replayed through the runner's
path into the database: `lab instrument replay FILE --record`."""

from __future__ import annotations

import asyncio
import io
import random
import secrets
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.frames import build_frames
from instruments.astm.link import Role
from instruments.astm.record_codec import build_records
from instruments.astm.transcript import TranscriptEntry, format_transcript
from instruments.cli import replay_file
from instruments.profiles import MeasuredResult, SpecimenOrder, get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.tables import UnmatchedResult

from .conftest import new_specimens, running, tcp_instrument
from .test_conversation import results_of

DATA = Path(__file__).resolve().parents[1] / "data" / "astm"

CAPTURES = {
    "generic_lis2a2_results.astm": dict(profile="generic"),
    "sysmex_xn_results.astm": dict(profile="sysmex_xn", tests={"WBC": "LPK", "HGB": "HB"}),
    "cobas_c311_results.astm": dict(profile="cobas", tests={"685": "NA", "687": "K"}),
    "cobas_e411_query.astm": dict(profile="cobas"),
    "ortho_vision_results.astm": dict(profile="ortho_vision"),
    "genexpert_results.astm": dict(profile="generic", encoding="utf-8"),
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_captures_replay_into_the_database_once(
    name: str, committing_factory: sessionmaker[Session]
) -> None:
    changes: dict[str, object] = dict(CAPTURES[name])
    instrument = tcp_instrument(f"replay-{secrets.token_hex(3)}", **changes)
    out = io.StringIO()
    first = replay_file(
        (DATA / name).read_text(encoding="ascii"),
        instrument=instrument,
        session_factory=committing_factory,
        out=out,
    )
    assert first.messages >= 1 and first.failed == 0, out.getvalue()
    with committing_factory() as session:
        kept = list(
            session.scalars(
                select(UnmatchedResult).where(UnmatchedResult.instrument == instrument.name)
            )
        )
    # The captures' specimen IDs are not ours: every result waits in the queue, none dropped.
    decoded = io.StringIO()
    replay_file(
        (DATA / name).read_text(encoding="ascii"),
        instrument=instrument,
        session_factory=None,
        out=decoded,
    )
    results_in_capture = decoded.getvalue().count("\n  R")
    assert len(kept) == first.unmatched == results_in_capture
    if name == "cobas_e411_query.astm":
        assert first.queries == 1
    if name == "cobas_c311_results.astm":
        assert sorted(r.test_code or "" for r in kept) == ["K", "NA"]
        assert all(r.instrument_test_code in ("685", "687") for r in kept)
    again = replay_file(
        (DATA / name).read_text(encoding="ascii"),
        instrument=instrument,
        session_factory=committing_factory,
        out=out,
    )
    assert again.unmatched == 0 and again.recorded == 0  # a replay changes nothing


def test_a_capture_with_our_specimen_is_recorded_and_a_replay_changes_nothing(
    committing_factory: sessionmaker[Session],
) -> None:
    accession = new_specimens(committing_factory, ["NA", "K"])["NA"]
    profile = get_profile("cobas")
    instrument = tcp_instrument(
        "replay-cobas", profile="cobas", local_codes=False, tests={"989": "NA", "990": "K"}
    )
    message = profile.results_message(
        SpecimenOrder(accession_number=accession, test_codes=("989", "990")),
        [
            MeasuredResult(test_code="989", value="141", unit="mmol/L", flags=("N",)),
            MeasuredResult(test_code="990", value="6.2", unit="mmol/L", flags=("H",)),
        ],
        name="c311",
        now=datetime(2026, 1, 27, 10, 14),
    )
    entries = [TranscriptEntry(time=0.0, writer=Role.INSTRUMENT, data=b"\x05")]
    for number, frame in enumerate(build_frames(build_records(message)), start=1):
        entries.append(TranscriptEntry(time=number * 0.05, writer=Role.INSTRUMENT, data=frame))
    entries.append(TranscriptEntry(time=1.0, writer=Role.INSTRUMENT, data=b"\x04"))
    text = format_transcript(entries)
    out = io.StringIO()
    first = replay_file(text, instrument=instrument, session_factory=committing_factory, out=out)
    second = replay_file(text, instrument=instrument, session_factory=committing_factory, out=out)
    assert (first.recorded, second.recorded, second.repeated) == (2, 0, 2), out.getvalue()
    stored = results_of(committing_factory, accession)
    assert "H" in stored["K"].flags and stored["K"].versions[-1].instrument_flags == "H"


def test_the_archive_is_a_capture_that_replays(
    committing_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    accession = new_specimens(committing_factory, ["TPK"])["TPK"]

    async def scenario() -> None:
        async with running(tcp_instrument("archived"), committing_factory, tmp_path) as runner:
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(profile=get_profile("generic"), rng=random.Random(12))
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            (run,) = await analyser.run(channel, [accession])
            assert run.outcome == "accepted"

    asyncio.run(scenario())
    (archive,) = (tmp_path / "archived").glob("*.astm")
    summary = replay_file(
        archive.read_text(encoding="ascii"),
        instrument=tcp_instrument("archived"),
        session_factory=committing_factory,
        out=io.StringIO(),
    )
    assert summary.messages == 2  # the query and the results
    assert (summary.recorded, summary.repeated, summary.queries) == (0, 1, 1)
