"""Span (a) read back from the raw traffic archive, without I/O: entries in, timings out.

The archive (`instruments.archive`) writes every piece of an analyser line, with its time, before
the piece is read or sent. So a result message's last frame has the time it arrived, and our
ACK of that frame, which the runner sends only after the message's transaction committed
(docs/architecture.md, rule 3), has the time it was sent. `ArchiveScanner` plays the host's link
layer over the analyser's side of the archive, exactly as `lab instrument replay` does, and
holds each completed message until the archive shows what the real host answered: ACK gives a
timing, NAK (the commit failed) gives none and the analyser's resend is followed instead.

One archive file carries one analyser's traffic; two lines of the same analyser at the same
moment (two TCP connections) interleave in it and cannot be told apart, so their frames are
refused here and those messages are left out of the report, never mistimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from instruments.astm.constants import ACK, EOT, NAK
from instruments.astm.errors import AstmError
from instruments.astm.events import MessageReceived, Sentinel
from instruments.astm.link import Connection, Role, State
from instruments.astm.record_codec import parse_records
from instruments.astm.records import OrderRecord, ResultRecord
from instruments.astm.transcript import TranscriptEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageTiming:
    """A result message: the arrival of its last frame and our ACK of it (Unix seconds)."""

    specimen_ids: tuple[str, ...]
    results: int
    last_frame_at: float
    acknowledged_at: float

    def span(self) -> float:
        return self.acknowledged_at - self.last_frame_at


def as_datetime(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _contents(message: MessageReceived) -> tuple[tuple[str, ...], int]:
    """Specimen IDs (O-3) and the number of R records; a message we cannot read counts none."""
    try:
        records = parse_records(message.records, encoding="latin-1")
    except AstmError:
        return (), 0
    specimens = tuple(
        dict.fromkeys(r.specimen_id for r in records if isinstance(r, OrderRecord) and r.text(3))
    )
    return specimens, sum(1 for r in records if isinstance(r, ResultRecord))


class ArchiveScanner:
    """Follows one analyser's archive, entry by entry."""

    def __init__(self) -> None:
        self.connection = Connection(role=Role.HOST)
        self._held: tuple[float, MessageReceived] | None = None

    @property
    def idle(self) -> bool:
        """Nothing in progress: a reader may start again here with a fresh scanner."""
        return self._held is None and self.connection.state is State.NEUTRAL

    def feed(self, entry: TranscriptEntry) -> list[MessageTiming]:
        timings: list[MessageTiming] = []
        connection = self.connection
        if entry.writer is Role.INSTRUMENT:
            connection.receive_data(entry.data, entry.time)
            self._drain(entry.time)
            return timings
        held = self._held
        if held is not None and (reply := _reply(entry.data)) is not None:
            arrived, message = held
            self._held = None
            if reply != NAK:  # ACK, or EOT in its place (LIS1-A 6.3.6: accepted, stop)
                connection.confirm_received(entry.time)
                specimens, results = _contents(message)
                if results:
                    timings.append(
                        MessageTiming(
                            specimen_ids=specimens,
                            results=results,
                            last_frame_at=arrived,
                            acknowledged_at=entry.time,
                        )
                    )
            else:
                # NAK: the host could not commit; the analyser's resend is what will count.
                connection.reject_received(entry.time)
        else:
            connection.tick(entry.time)
        self._drain(entry.time)
        return timings

    def _drain(self, now: float) -> None:
        connection = self.connection
        while not isinstance(event := connection.next_event(), Sentinel):
            if isinstance(event, MessageReceived) and event.needs_confirmation:
                self._held = (now, event)
        connection.data_to_send()  # what this copy of the host would say is not needed


def _reply(data: bytes) -> int | None:
    """The host's answer to a held frame in one written piece: ACK, NAK or EOT, if any."""
    for byte in data:
        if byte in (ACK, NAK, EOT):
            return byte
    return None
