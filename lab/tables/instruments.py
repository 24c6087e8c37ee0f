"""Tables of the analyser side: results that found no home, QC results, order downloads.

The raw traffic archive is not here: it is append-only files under `LAB_DATA_DIR/archive/`
(see `instruments.archive` and docs/analysers.md for why).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lab.db import Base


class UnmatchedStatus(StrEnum):
    """open until a person resolves it (assigns it, which records it) or discards it."""

    OPEN = "open"
    RESOLVED = "resolved"
    DISCARDED = "discarded"


class DownloadStatus(StrEnum):
    """An order pushed to an analyser: queued, then sent; a failed send is tried again."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class UnmatchedResult(Base):
    """A result the analyser sent that could not be stored against an ordered test.

    Unknown specimen, unmapped test code, test not ordered, unit or value refused: the row keeps
    everything the analyser said and why it was not recorded, until a person resolves it
    (assigns it to a specimen and test, which records it) or discards it with a reason.
    """

    __tablename__ = "unmatched_result"
    __table_args__ = (Index("ix_unmatched_result_status_received", "status", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # a repeat adds nothing
    instrument: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    specimen_id: Mapped[str] = mapped_column(String(80))  # O-3 as sent
    instrument_test_code: Mapped[str] = mapped_column(String(80))
    test_code: Mapped[str | None] = mapped_column(String(20))  # the local code, when mapped
    value: Mapped[str] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(String(40))
    instrument_flags: Mapped[str] = mapped_column(String(200))
    result_status: Mapped[str] = mapped_column(String(4))
    operator: Mapped[str] = mapped_column(String(80))
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)  # in English, for the API and the audit trail
    # The same reason for the pages to say in the reader's language: `unmatched.why.<code>` or,
    # for a refusal of the result path, `error.<code>`, with its parameters.
    reason_code: Mapped[str] = mapped_column(String(40), default="", server_default="")
    reason_params: Mapped[dict[str, str]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    raw_record: Mapped[str] = mapped_column(Text)
    # The whole message the record came in (H to L), as read in the analyser's character set.
    raw_message: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default=UnmatchedStatus.OPEN.value)
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    handled_by: Mapped[str | None] = mapped_column(String(64))
    handling_note: Mapped[str] = mapped_column(Text, default="")
    result_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("result.id"))


class QcResult(Base):
    """A quality control result (control material), kept apart from patient results."""

    __tablename__ = "qc_result"
    __table_args__ = (Index("ix_qc_result_instrument_observed", "instrument", "observed_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    instrument: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    control_id: Mapped[str] = mapped_column(String(80))  # O-3 of the control specimen
    instrument_test_code: Mapped[str] = mapped_column(String(80))
    test_code: Mapped[str | None] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(String(40))
    instrument_flags: Mapped[str] = mapped_column(String(200))
    result_status: Mapped[str] = mapped_column(String(4))
    operator: Mapped[str] = mapped_column(String(80))
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    raw_record: Mapped[str] = mapped_column(Text)


class OrderDownload(Base):
    """Orders pushed to an analyser that wants them (`order_download = true`), one row per
    specimen and analyser, so a specimen is sent once; failed sends are tried again."""

    __tablename__ = "order_download"
    __table_args__ = (UniqueConstraint("instrument", "specimen_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    specimen_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specimen.id"))
    accession_number: Mapped[str] = mapped_column(String(20))
    test_codes: Mapped[list[str]] = mapped_column(ARRAY(String(80)))
    status: Mapped[str] = mapped_column(String(16), default=DownloadStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
