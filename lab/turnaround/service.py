"""Turnaround: copy span (a) out of the archive into the database, and report both spans.

`ArchiveIndexer.run_once` reads what was appended to each archive file since the last call
(whole lines only), feeds it to that file's `ArchiveScanner`, stores the timings found, and saves
how far it read, at the last point where the line was idle (so a restarted indexer starts a fresh
scanner there; timings read twice are stored once). It runs on the node that runs the analysers
(`lab.turnaround.runtime`); the report runs anywhere.

`report` gives p50/p90/p99 of
(a) analyser's last frame -> our ACK of it, per result message, i.e. the results are stored and
    shown for review (the ACK goes only after the commit), and
(b) the verification (or the end of a release hold) that queued an ORU^R01 -> the record's ACK,
    per message: `hl7_message.created_at` is the start of the transaction that verified and
    queued it, `finished_at` when the accepting ACK was stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session, sessionmaker

from instruments.astm.errors import TranscriptError
from instruments.astm.link import Role
from instruments.astm.transcript import TranscriptEntry, decode_payload
from lab.audit import Actor
from lab.db import insert_rows
from lab.errors import InvalidInput, PermissionDenied
from lab.tables import AnalyserMessageTiming, ArchiveCursor, Hl7Status
from lab.turnaround.archive_scan import ArchiveScanner, MessageTiming, as_datetime

log = logging.getLogger(__name__)
_WRITERS = {">": Role.INSTRUMENT, "<": Role.HOST}
REPORT_ROLES = frozenset({"physician", "admin"})


@dataclass(slots=True)
class _Follower:
    """Where the indexer is in one file, and the link state at that point."""

    position: int  # bytes read and fed
    saved: int  # the position stored in the database (the line was idle there)
    moment: float = 0.0  # the last `@` time seen
    scanner: ArchiveScanner = field(default_factory=ArchiveScanner)


@dataclass(slots=True)
class IndexerStats:
    messages: int = 0
    runs: int = 0
    last_error: str = ""


class ArchiveIndexer:
    """Follows every file under the archive directory; one instance per process."""

    def __init__(self, archive_dir: Path, session_factory: sessionmaker[Session]) -> None:
        self.archive_dir = archive_dir
        self.session_factory = session_factory
        self.stats = IndexerStats()
        self._followers: dict[str, _Follower] = {}

    def run_once(self) -> int:
        """Index what is new in every file; returns the number of message timings stored."""
        stored = 0
        if not self.archive_dir.is_dir():
            return 0
        for path in sorted(self.archive_dir.glob("*/*.astm")):
            name = path.relative_to(self.archive_dir).as_posix()
            try:
                stored += self._index_file(path, name)
            except (OSError, TranscriptError) as error:
                # A damaged file must not stop the others; it is tried again next time.
                self.stats.last_error = f"{name}: {error}"
                log.warning("turnaround: cannot read %s: %s", name, error)
        self.stats.messages += stored
        self.stats.runs += 1
        return stored

    def _index_file(self, path: Path, name: str) -> int:
        follower = self._followers.get(name)
        if follower is None:
            with self.session_factory() as session:
                saved = session.scalar(
                    select(ArchiveCursor.position).where(ArchiveCursor.path == name)
                )
            follower = _Follower(position=saved or 0, saved=saved or 0)
            self._followers[name] = follower
        if path.stat().st_size <= follower.position:
            return 0
        with path.open("rb") as handle:
            handle.seek(follower.position)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # whole lines only; the rest is read next time
        if end == 0:
            return 0
        instrument = path.parent.name
        timings: list[MessageTiming] = []
        idle_at = follower.saved
        offset = follower.position
        for line in data[:end].split(b"\n")[:-1]:
            offset += len(line) + 1
            timings += self._feed_line(follower, line.decode("ascii"))
            if follower.scanner.idle and line[:1] in (b">", b"<"):
                idle_at = offset
        follower.position = offset
        if timings or idle_at != follower.saved:  # else nothing new to keep
            self._store(instrument, name, timings, idle_at)
            follower.saved = idle_at
        return len(timings)

    def _feed_line(self, follower: _Follower, line: str) -> list[MessageTiming]:
        mark = line[:1]
        if mark == "@":
            follower.moment = float(line[2:])
            return []
        writer = _WRITERS.get(mark)
        if writer is None:
            return []  # a comment or a blank line
        entry = TranscriptEntry(time=follower.moment, writer=writer, data=decode_payload(line[2:]))
        return follower.scanner.feed(entry)

    def _store(self, instrument: str, name: str, timings: list[MessageTiming], at: int) -> None:
        # Statements of the same text every round whatever the number of timings, so they stay
        # prepared (a VALUES list of each round's length was compiled anew every round).
        with self.session_factory() as session:
            insert_rows(
                session,
                _TIMINGS,
                [
                    {
                        "instrument": instrument,
                        "specimen_ids": ",".join(t.specimen_ids)[:400],
                        "results": t.results,
                        "last_frame_at": as_datetime(t.last_frame_at),
                        "acknowledged_at": as_datetime(t.acknowledged_at),
                    }
                    for t in timings
                ],
                skip_conflicts=True,
            )
            session.execute(_READ_UP_TO, {"path": name, "position": at})
            session.commit()


_TIMINGS = cast(Table, AnalyserMessageTiming.__table__)
_READ_UP_TO = text(
    "INSERT INTO turnaround_archive_cursor (path, position) VALUES (:path, :position) "
    "ON CONFLICT (path) DO UPDATE SET position = excluded.position, updated_at = now()"
)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """Seconds at the 50th, 90th and 99th percentile over `count` samples (None: no samples)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnaroundReport:
    since: datetime
    until: datetime | None
    analyser_to_stored: Span
    results_stored: int
    verified_to_record_ack: Span


_ANALYSER = text(
    """
    SELECT count(*), coalesce(sum(results), 0),
           percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
               ORDER BY extract(epoch FROM acknowledged_at - last_frame_at))
    FROM turnaround_analyser_message
    WHERE acknowledged_at >= :since AND (CAST(:until AS timestamptz) IS NULL
                                         OR acknowledged_at < :until)
    """
)
# Outbound ORU^R01 acknowledged by the record. created_at is the start of the transaction that
# verified (or released) and queued it: the outbox row is written in that same transaction.
_RECORD = text(
    """
    SELECT count(*),
           percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (
               ORDER BY extract(epoch FROM finished_at - created_at))
    FROM hl7_message
    WHERE direction = 'out' AND status = :acknowledged AND message_type LIKE 'ORU%'
      AND finished_at >= :since AND (CAST(:until AS timestamptz) IS NULL OR finished_at < :until)
    """
)


def _span(count: int, values: list[float] | None) -> Span:
    if not count or not values:
        return Span(count=count, p50=None, p90=None, p99=None)
    p50, p90, p99 = (round(float(v), 6) for v in values)
    return Span(count=count, p50=p50, p90=p90, p99=p99)


def report(
    session: Session, *, actor: Actor, since: datetime, until: datetime | None = None
) -> TurnaroundReport:
    """Both spans for messages finished in [since, until)."""
    if not actor.roles & REPORT_ROLES:
        raise PermissionDenied("the turnaround report is for the roles admin and physician")
    if since.tzinfo is None or (until is not None and until.tzinfo is None):
        raise InvalidInput.field("since", "give a time with its UTC offset, e.g. ...Z or +01:00")
    if until is not None and until <= since:
        raise InvalidInput.field("until", "must be later than since")
    params = {"since": since, "until": until}
    messages, results, analyser = session.execute(_ANALYSER, params).one()
    acknowledged = {**params, "acknowledged": Hl7Status.ACKNOWLEDGED.value}
    oru, record = session.execute(_RECORD, acknowledged).one()
    return TurnaroundReport(
        since=since,
        until=until,
        analyser_to_stored=_span(int(messages), analyser),
        results_stored=int(results),
        verified_to_record_ack=_span(int(oru), record),
    )
