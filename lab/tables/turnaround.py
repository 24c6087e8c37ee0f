"""Tables of the turnaround report: analyser message timings and the archive reading cursor.

Why copied out of the archive: the raw traffic archive already holds both moments of span (a)
with microseconds (the `@` line before the analyser's last frame, and the one before our ACK),
but it is a file on the node that runs the analysers; the report must work on any node and
over long periods without re-reading files. The HL7 span (b) needs no table: the message log
keeps when each ORU was queued (`created_at`) and acknowledged (`finished_at`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from lab.db import Base


class AnalyserMessageTiming(Base):
    """One result message from an analyser: when its last frame arrived, when we ACKed it."""

    __tablename__ = "turnaround_analyser_message"
    __table_args__ = (
        # The same message read twice (the indexer restarted before saving its cursor) is one row.
        UniqueConstraint("instrument", "last_frame_at"),
        Index("ix_turnaround_analyser_message_acknowledged_at", "acknowledged_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    specimen_ids: Mapped[str] = mapped_column(String(400))
    """O-3 of each order in the message, comma-separated (accession numbers)."""
    results: Mapped[int] = mapped_column(Integer)
    last_frame_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ArchiveCursor(Base):
    """How far one archive file has been read, at a point where its line was idle."""

    __tablename__ = "turnaround_archive_cursor"

    path: Mapped[str] = mapped_column(String(400), primary_key=True)
    """`<instrument>/<YYYY-MM-DD>.astm`, relative to the archive directory."""
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
