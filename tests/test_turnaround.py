"""Span (a) read back from the archive: the scanner (pure) and the indexer (files -> database).

Transcripts are made by two real link-layer `Connection`s joined in memory (`ConnectionPair`),
with a wire that cuts every write at random places and lets time pass per piece, so each frame
and each ACK has its own time, as in a real archive.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import TrafficArchive
from instruments.astm.link import Role
from instruments.astm.pair import ConnectionPair
from instruments.astm.record_codec import build_records
from instruments.astm.transcript import TranscriptEntry
from instruments.profiles import MeasuredResult, SpecimenOrder, get_profile
from lab.db import make_engine, make_session_factory
from lab.turnaround.archive_scan import ArchiveScanner, MessageTiming
from lab.turnaround.service import ArchiveIndexer
from testkit.database import ScratchDatabase

PROFILE = get_profile("generic")
NOW = datetime(2026, 11, 27, 9, 30)


def results_message(accession: str, tests: int) -> list[bytes]:
    order = SpecimenOrder(accession_number=accession, test_codes=("NA", "K", "KREA")[:tests])
    measured = [
        MeasuredResult(test_code=code, value="4.1", unit="mmol/L") for code in order.test_codes
    ]
    return build_records(PROFILE.results_message(order, measured, name="SIM", now=NOW), trim=True)


def conversation(
    seed: int, messages: list[list[bytes]], *, refuse_first: bool = False
) -> list[TranscriptEntry]:
    """The archive of an analyser sending `messages`; the host NAKs each message's last frame
    the first time when `refuse_first` (its commit failed), as the runner does."""
    rng = random.Random(seed)
    refused: set[bytes] = set()

    def decide(_role: Role, message: object) -> bool:
        key = b"".join(message.records)  # type: ignore[attr-defined]
        if refuse_first and key not in refused:
            refused.add(key)
            return False
        return True

    pair = ConnectionPair(decide=decide, now=1_800_000_000.0)

    def wire(_writer: Role, data: bytes) -> list[bytes]:
        pair.now += rng.uniform(0.001, 0.02)  # each piece is archived at its own moment
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 3))))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    pair.wire = wire
    for records in messages:
        pair.instrument.send_message(records, pair.now)
    pair.run(max_time=600)
    return [
        TranscriptEntry(time=moment, writer=writer, data=data)
        for moment, writer, data in pair.transcript.pieces
    ]


def scan(entries: list[TranscriptEntry], *, complete: bool = True) -> list[MessageTiming]:
    scanner = ArchiveScanner()
    timings = [timing for entry in entries for timing in scanner.feed(entry)]
    assert scanner.idle is complete
    return timings


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(1, 3), min_size=1, max_size=5))
def test_one_timing_per_result_message_whatever_the_reads(seed: int, sizes: list[int]) -> None:
    query = build_records(PROFILE.query_message("Q1", name="SIM", now=NOW), trim=True)
    messages = [query] + [results_message(f"S{n}", size) for n, size in enumerate(sizes)]
    entries = conversation(seed, messages)
    timings = scan(entries)
    assert [(t.specimen_ids, t.results) for t in timings] == [
        ((f"S{n}",), size) for n, size in enumerate(sizes)
    ]
    host_acks = [e.time for e in entries if e.writer is Role.HOST and e.data == b"\x06"]
    for timing in timings:
        assert 0 < timing.span() < 1
        assert timing.acknowledged_at in host_acks  # the moment our ACK was written


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_refused_message_counts_once_from_its_accepted_resend(seed: int) -> None:
    entries = conversation(seed, [results_message("R1", 2)], refuse_first=True)
    assert any(e.writer is Role.HOST and b"\x15" in e.data for e in entries)  # a NAK was sent
    (timing,) = scan(entries)
    last_ack = max(e.time for e in entries if e.writer is Role.HOST and b"\x06" in e.data)
    assert timing.acknowledged_at == last_ack
    assert timing.results == 2


def test_no_timing_without_our_ack() -> None:
    entries = conversation(1, [results_message("N1", 1)])
    final_ack = max(i for i, e in enumerate(entries) if e.writer is Role.HOST)
    # cut before our ACK of the last frame: the message is not stored yet, so no timing
    assert scan(entries[:final_ack], complete=False) == []


# ------------------------------------------------------------------------ the indexer


@pytest.fixture(scope="module")
def committing(committed_database: ScratchDatabase) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(committed_database.runtime_url, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


def stored(factory: sessionmaker[Session], instrument: str) -> list[tuple[str, int]]:
    with factory() as session:
        rows = session.execute(
            text(
                "SELECT specimen_ids, results FROM turnaround_analyser_message "
                "WHERE instrument = :i ORDER BY last_frame_at"
            ),
            {"i": instrument},
        ).all()
    return [(str(r[0]), int(r[1])) for r in rows]


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.1, 0.9))
def test_indexer_reads_appended_lines_and_survives_a_restart(
    committing: sessionmaker[Session], tmp_path: Path, seed: int, cut: float
) -> None:
    instrument = f"ix-{secrets.token_hex(4)}"
    archive_dir = tmp_path / secrets.token_hex(4)
    entries = conversation(seed, [results_message(f"X{n}", 1 + n % 3) for n in range(6)])
    archive = TrafficArchive(archive_dir)
    half = int(len(entries) * cut)
    for entry in entries[:half]:
        archive.keep_now(instrument, entry.writer, entry.data, at=entry.time)
    first = ArchiveIndexer(archive_dir, committing)
    first.run_once()
    for entry in entries[half:]:
        archive.keep_now(instrument, entry.writer, entry.data, at=entry.time)
    archive.close()
    # a restarted process starts from the saved cursor with a fresh scanner ...
    ArchiveIndexer(archive_dir, committing).run_once()
    # ... and the old one goes on from where it was: nothing is stored twice
    first.run_once()
    assert stored(committing, instrument) == [(f"X{n}", 1 + n % 3) for n in range(6)]


def test_indexer_passes_over_a_damaged_line(
    committing: sessionmaker[Session], tmp_path: Path, committed_database: ScratchDatabase
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "2026-11-27.astm").write_text("@ 1.0\n> <NOT A TOKEN>\n")
    indexer = ArchiveIndexer(tmp_path, committing)
    assert indexer.run_once() == 0
    assert "bad/2026-11-27.astm" in indexer.stats.last_error


def test_report_roles_and_window(client: object, as_role: dict[str, dict[str, str]]) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    answer = client.get("/api/v1/reports/turnaround", headers=as_role["physician"])
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) >= {"analyser_to_stored", "verified_to_record_ack", "results_stored"}
    assert client.get("/api/v1/reports/turnaround", headers=as_role["admin"]).status_code == 200
    for role in ("technician", "reviewer", "instrument", "interface"):
        assert client.get("/api/v1/reports/turnaround", headers=as_role[role]).status_code == 403
    assert client.get("/api/v1/reports/turnaround").status_code == 401
    naive = client.get(
        "/api/v1/reports/turnaround?since=2026-11-27T08:00:00", headers=as_role["admin"]
    )
    assert naive.status_code == 422
    backwards = client.get(
        "/api/v1/reports/turnaround?since=2026-11-27T08:00:00Z&until=2026-11-27T07:00:00Z",
        headers=as_role["admin"],
    )
    assert backwards.status_code == 422


def test_report_percentiles(
    committing: sessionmaker[Session], committed_database: ScratchDatabase
) -> None:
    """Known spans in, their percentiles out (PostgreSQL's percentile_cont, interpolated)."""
    from lab.audit import Actor
    from lab.turnaround.service import report

    instrument = f"pc-{secrets.token_hex(3)}"
    base = datetime.fromisoformat("2031-01-01T00:00:00+00:00")
    with committing() as session:
        for n in range(1, 101):
            session.execute(
                text(
                    "INSERT INTO turnaround_analyser_message (instrument, specimen_ids, results, "
                    "last_frame_at, acknowledged_at) VALUES (:i, 'S', 2, :t, "
                    ":t + make_interval(secs => :s))"
                ),
                {"i": instrument, "t": base.replace(minute=n % 60, hour=n // 60), "s": n / 1000},
            )
        session.commit()
        physician = Actor(user_id=None, username="p", roles=frozenset({"physician"}))
        found = report(session, actor=physician, since=base)
        session.execute(
            text("DELETE FROM turnaround_analyser_message WHERE instrument = :i"),
            {"i": instrument},
        )
        session.commit()
    span = found.analyser_to_stored
    assert span.count == 100 and found.results_stored == 200
    assert span.p50 == pytest.approx(0.0505)
    assert span.p90 == pytest.approx(0.0901)
    assert span.p99 == pytest.approx(0.09901)
