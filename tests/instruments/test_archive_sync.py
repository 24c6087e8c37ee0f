"""The raw archive on an analyser line: every piece is in the file before it is read or sent,
and the analyser's file is forced to disk before a message's transaction, once per message
(not once per frame and per ACK)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from instruments.archive import TrafficArchive
from instruments.astm.link import Role
from instruments.astm.transcript import read_transcript
from instruments.config import InstrumentConfig
from instruments.messages import MessageOutcome
from instruments.profiles import Profile, get_profile
from instruments.runner import InstrumentRunner, LabGateway
from instruments.simulator import VirtualAnalyser
from instruments.transports import tcp

from .conftest import new_specimens, tcp_instrument


class Recorded:
    """What happened, in order: pieces kept, disk flushes, transactions begun."""

    def __init__(self) -> None:
        self.events: list[str] = []


def test_a_message_is_on_disk_before_its_transaction_with_one_flush_per_message(
    committing_factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = Recorded()
    real_fdatasync = os.fdatasync

    def fdatasync(descriptor: int) -> None:
        real_fdatasync(descriptor)
        recorded.events.append("disk")

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    class Archive(TrafficArchive):
        def keep_now(
            self,
            instrument: str,
            writer: Role,
            data: bytes,
            at: float | None = None,
            *,
            durable: bool = True,
        ) -> None:
            super().keep_now(instrument, writer, data, at, durable=durable)
            recorded.events.append("kept")

    seen_in_file: list[bool] = []

    class Gateway(LabGateway):
        def handle(
            self, instrument: InstrumentConfig, profile: Profile, raws: Sequence[bytes]
        ) -> MessageOutcome:
            recorded.events.append("handle")
            # The whole message is in the file before it is parsed and stored.
            text = next((tmp_path / instrument.name).glob("*.astm")).read_text(encoding="ascii")
            entries = read_transcript(text)
            received = b"".join(e.data for e in entries if e.writer is Role.INSTRUMENT)
            seen_in_file.append(all(raw[:40] in received for raw in raws))
            return super().handle(instrument, profile, raws)

    tubes = [new_specimens(committing_factory, ["NA", "K"])["NA"] for _ in range(3)]
    archive = Archive(tmp_path)
    runner = InstrumentRunner(
        tcp_instrument("synced"), gateway=Gateway(committing_factory), archive=archive
    )

    async def scenario() -> list[str]:
        await runner.start()
        try:
            for _ in range(200):
                if runner.listening_port is not None:
                    break
                await asyncio.sleep(0.01)
            assert runner.listening_port is not None
            analyser = VirtualAnalyser(
                profile=get_profile("generic"), name="SYNC", rng=random.Random(3)
            )
            channel = await tcp.open_channel("127.0.0.1", runner.listening_port)
            runs = await analyser.run(channel, tubes, query=False, tests=["NA", "K"])
            return [run.outcome for run in runs]
        finally:
            await runner.stop()
            archive.close()

    assert asyncio.run(scenario()) == ["accepted"] * 3
    events = recorded.events
    assert events.count("handle") == 3
    assert seen_in_file == [True, True, True]
    for place, event in enumerate(events):
        if event == "handle":
            before = events[:place]
            last_kept = len(before) - 1 - before[::-1].index("kept")
            assert "disk" in before[last_kept:], "a message was stored before it was on disk"
    # One message is ENQ, five frames (H, P, O, two R records and L: one each), EOT and our
    # six ACKs: a dozen pieces kept, and one disk flush before its transaction (a few more
    # when the line closes and the archive is closed).
    assert events.count("kept") >= 3 * 12
    assert events.count("disk") <= 3 + 3
