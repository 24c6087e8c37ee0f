"""Captured transcripts (tests/data/astm, and our own archive files) replayed through the runner's
path into the database: `lab instrument replay FILE --record`."""

from __future__ import annotations

import asyncio
import io
import os
import random
import secrets
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.frames import build_frames
from instruments.astm.link import Role
from instruments.astm.record_codec import build_records
from instruments.astm.records import Record
from instruments.astm.transcript import TranscriptEntry, format_transcript
from instruments.cli import replay_file
from instruments.profiles import MeasuredResult, SpecimenOrder, get_profile
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp
from lab.tables import UnmatchedResult
from testkit.database import ScratchDatabase

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
    "cobas_e411_two_queries.astm": dict(profile="cobas", tests={"10": "TSH"}),
    "cobas_c311_rerun_dilution.astm": dict(profile="cobas", tests={"685": "NA", "687": "K"}),
    "sysmex_xn_units_empty_o3.astm": dict(
        profile="sysmex_xn", tests={"WBC": "LPK", "PLT": "TPK", "HGB": "HB"}
    ),
    "generic_utf8_text.astm": dict(profile="generic", encoding="utf-8"),
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
    if name == "cobas_e411_two_queries.astm":
        assert (first.messages, first.queries) == (3, 2)  # every message, both queries
    if name == "cobas_c311_rerun_dilution.astm":
        assert first.messages == 2
        assert [r.raw_record.split("|")[2] for r in kept] == [
            "^^^685/",
            "^^^685/5",
            "^^^687/",
            "^^^685/",
        ]
    if name == "sysmex_xn_units_empty_o3.astm":
        # O-3 is empty: the sample number comes from O-4 and is kept for whoever resolves them.
        assert {r.specimen_id for r in kept} == {"000777"}
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


def _capture(*phases: tuple[Role, list[Record]]) -> str:
    """A transcript: each phase is one side's transfer (ENQ, frames each ACKed, EOT)."""
    entries: list[TranscriptEntry] = []
    time = 0.0
    for writer, records in phases:
        other = Role.HOST if writer is Role.INSTRUMENT else Role.INSTRUMENT
        entries.append(TranscriptEntry(time=time, writer=writer, data=b"\x05"))
        entries.append(TranscriptEntry(time=time, writer=other, data=b"\x06"))
        for frame in build_frames(build_records(records, trim=True)):
            time += 0.05
            entries.append(TranscriptEntry(time=time, writer=writer, data=frame))
            entries.append(TranscriptEntry(time=time, writer=other, data=b"\x06"))
        time += 0.05
        entries.append(TranscriptEntry(time=time, writer=writer, data=b"\x04"))
        time += 1.0
    return format_transcript(entries)


def test_a_capture_with_two_queries_answered_otherwise_then_is_handled_whole(
    committing_factory: sessionmaker[Session],
) -> None:
    """The capture's host answered "no information" (two frames); ours would answer with the
    specimen's orders (more frames). Answering into the replayed line would put it out of step
    with the analyser's ACKs in the capture and lose the messages after the first query."""
    first, second = (new_specimens(committing_factory, ["NA"])["NA"] for _ in range(2))
    profile = get_profile("generic")
    when = datetime(2026, 11, 27, 8, 0)
    no_information = profile.no_information(host_name="OLD", reply_to=None, now=when)
    phases: list[tuple[Role, list[Record]]] = []
    for accession in (first, second):
        phases.append((Role.INSTRUMENT, profile.query_message(accession, name="A1", now=when)))
        phases.append((Role.HOST, no_information))
    phases.append(
        (
            Role.INSTRUMENT,
            profile.results_message(
                SpecimenOrder(accession_number=first, test_codes=("NA",)),
                [MeasuredResult(test_code="NA", value="140", unit="mmol/L", completed_at=when)],
                name="A1",
                now=when,
            ),
        )
    )
    out = io.StringIO()
    summary = replay_file(
        _capture(*phases),
        instrument=tcp_instrument("replay-2q"),
        session_factory=committing_factory,
        out=out,
    )
    assert (summary.messages, summary.queries, summary.recorded) == (3, 2, 1), out.getvalue()
    assert "answered with 1 orders; not sent" in out.getvalue()
    assert summary.skipped == [] and summary.failed == 0
    assert results_of(committing_factory, first)["NA"].value_numeric == 140


def test_a_utf8_capture_is_not_misread_as_latin1(
    committing_factory: sessionmaker[Session], committed_database: ScratchDatabase
) -> None:
    capture = DATA / "generic_utf8_text.astm"
    instrument = tcp_instrument(f"replay-{secrets.token_hex(3)}")  # generic: ISO 8859-1
    out = io.StringIO()
    refused = replay_file(
        capture.read_text(encoding="ascii"),
        instrument=instrument,
        session_factory=committing_factory,
        out=out,
    )
    assert refused.messages == 1 and refused.unmatched == 0 and len(refused.problems) == 1
    assert "--encoding utf-8" in out.getvalue()
    with committing_factory() as session:
        query = select(UnmatchedResult).where(UnmatchedResult.instrument == instrument.name)
        assert session.scalars(query).all() == []  # nothing stored misread
    taken = replay_file(
        capture.read_text(encoding="ascii"),
        instrument=instrument,
        session_factory=committing_factory,
        out=out,
        encoding="utf-8",
    )
    assert (taken.unmatched, taken.problems) == (1, [])
    with committing_factory() as session:
        (row,) = session.scalars(query).all()
        assert "^Ødegård^Siv" in row.raw_message  # read right: ø and å, not Ã¸ and Ã¥

    # The command: refuses (exit 1, says why), then takes --encoding.
    env = dict(os.environ, LAB_DATABASE_URL=committed_database.url)
    command = [sys.executable, "-m", "lab.cli", "instrument", "replay", str(capture), "--record"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "it is UTF-8" in done.stdout, done.stdout + done.stderr
    done = subprocess.run(
        [*command, "--encoding", "utf-8"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 messages: 0 results recorded, 0 repeated, 1 unmatched" in done.stdout
    bad = subprocess.run(
        [*command, "--encoding", "klingon"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode != 0 and "unknown encoding" in bad.stderr


def test_a_live_message_in_utf8_for_a_latin1_analyser_is_noted(db: Session) -> None:
    from instruments.messages import handle_raw_message

    lines = ["H|\\^&|||GEN^1", "P|1|||100|^Ødegård^Siv", "L|1|N"]
    outcome = handle_raw_message(
        db,
        instrument=tcp_instrument("live-utf8"),
        profile=get_profile("generic"),
        raws=[line.encode("utf-8") for line in lines],
    )
    assert any("valid UTF-8" in note and "latin-1" in note for note in outcome.notes)
    plain = handle_raw_message(
        db,
        instrument=tcp_instrument("live-latin1"),
        profile=get_profile("generic"),
        raws=[line.encode("latin-1") for line in lines],
    )
    assert plain.notes == []
