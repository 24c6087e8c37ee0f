"""Tables of the HL7 interface: the message log (which is also the outbox) and held releases.

`hl7_message` holds every inbound and outbound message raw, stored BEFORE it is processed or
sent (docs/architecture.md, rules 3, 4 and 7). Inbound statuses: received -> processed | error |
rejected. Outbound statuses: queued -> sent -> acknowledged, with failed (waiting for a retry)
and dead (parked for an operator) on the way.

`hl7_pending_release` is one row per order whose verified results are held back until the order
is complete or the hold time has passed (release policy, docs/hl7-interface.md);
`hl7_reported_result` says which version of which result went out in which message, so a
result is reported once and a correction is known to follow an earlier report;
`hl7_withdrawal` holds tests cancelled in the lab or left without a specimen by a rejection,
until the ORU that tells the record is queued.
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
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from lab.db import Base
from lab.tables.lifecycle import Lifecycle, sql_list

INBOUND = "in"
OUTBOUND = "out"


class Hl7Status(StrEnum):
    # inbound
    RECEIVED = "received"
    PROCESSED = "processed"
    ERROR = "error"
    REJECTED = "rejected"
    # outbound
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    DEAD = "dead"


_H = Hl7Status
# Inbound: stored (received), then answered once: AA processed, AE error, AR rejected.
# Outbound: queued, claimed and sent, then acknowledged; a failed send waits for a retry (or a
# sent one whose ACK never came is claimed again), and after the last retry it is parked dead
# until an operator sends it again (queued).
HL7_LIFECYCLE = Lifecycle(
    "message",
    {
        _H.RECEIVED: {_H.PROCESSED, _H.ERROR, _H.REJECTED},
        _H.PROCESSED: set(),
        _H.ERROR: set(),
        _H.REJECTED: set(),
        _H.QUEUED: {_H.SENT},
        _H.SENT: {_H.SENT, _H.ACKNOWLEDGED, _H.FAILED, _H.DEAD},
        _H.FAILED: {_H.SENT},
        _H.DEAD: {_H.QUEUED},
        _H.ACKNOWLEDGED: set(),
    },
)
HL7_INBOUND_STATUSES = (_H.RECEIVED, _H.PROCESSED, _H.ERROR, _H.REJECTED)
HL7_OUTBOUND_STATUSES = (_H.QUEUED, _H.SENT, _H.ACKNOWLEDGED, _H.FAILED, _H.DEAD)
# Outbound and not delivered yet: the dispatcher's work, per patient in order.
HL7_UNDELIVERED = frozenset({_H.QUEUED, _H.SENT, _H.FAILED, _H.DEAD})
# Due for a (first or further) attempt once `next_attempt_at` has come.
HL7_WAITING = frozenset({_H.QUEUED, _H.FAILED})


class Hl7Message(Base):
    __tablename__ = "hl7_message"
    __table_args__ = (
        # Duplicate detection: MSH-10 together with the sender (MSH-3/MSH-4) names a message.
        Index(
            "uq_hl7_message_inbound_key",
            "sending_application",
            "sending_facility",
            "control_id",
            unique=True,
            postgresql_where=text("direction = 'in' AND control_id <> ''"),
        ),
        # The dispatcher's work: undelivered outbound messages per patient, oldest first.
        Index(
            "ix_hl7_message_outbox",
            "patient_id",
            "id",
            postgresql_where=text(f"direction = 'out' AND status IN ({sql_list(HL7_UNDELIVERED)})"),
        ),
        Index("ix_hl7_message_direction_id", "direction", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    status: Mapped[str] = mapped_column(String(16))
    partner: Mapped[str] = mapped_column(String(200), default="")
    """Inbound: the sender as `MSH-3^MSH-4` and its address; outbound: the receiver's URL."""
    sending_application: Mapped[str] = mapped_column(String(100), default="")
    sending_facility: Mapped[str] = mapped_column(String(100), default="")
    control_id: Mapped[str] = mapped_column(String(64), default="")
    message_type: Mapped[str] = mapped_column(String(32), default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    charset: Mapped[str] = mapped_column(String(20), default="UNICODE UTF-8")
    commit_ack: Mapped[str | None] = mapped_column(Text)
    """Enhanced mode: the commit ACK (CA/CE/CR) sent for an inbound message."""
    ack: Mapped[str | None] = mapped_column(Text)
    """The (application) ACK sent for an inbound message or received for an outbound one."""
    ack_code: Mapped[str | None] = mapped_column(String(2))
    error: Mapped[str] = mapped_column(Text, default="")
    patient_id: Mapped[int | None] = mapped_column(BigInteger)
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[int | None] = mapped_column(Integer)
    """Outbound and `sent`: the claim number of the dispatcher delivering it, locked by that
    dispatcher's database session while it lives (`Claimant` in lab/hl7/dispatcher.py);
    else NULL."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Inbound: processed (ACK built); outbound: acknowledged or parked dead."""


class PendingRelease(Base):
    """An order whose verified results wait for the rest of the order or for `due_at`."""

    __tablename__ = "hl7_pending_release"

    order_id: Mapped[int] = mapped_column(ForeignKey("lab_order.id"), primary_key=True)
    held_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ReportedResult(Base):
    """One result version sent to the record, and the message that carried it."""

    __tablename__ = "hl7_reported_result"
    __table_args__ = (Index("ix_hl7_reported_result_result", "result_id", "result_version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("result.id"))
    result_version: Mapped[int] = mapped_column(Integer)
    observation_status: Mapped[str] = mapped_column(String(1))  # OBX-11 F C X D
    message_id: Mapped[int] = mapped_column(ForeignKey("hl7_message.id"), index=True)


class WithdrawalKind(StrEnum):
    CANCELLED = "cancelled"
    """Tests cancelled in the lab."""
    REJECTED = "rejected"
    """The specimen was rejected: its tests wait for a new specimen."""


class Withdrawal(Base):
    """Tests that will not be done, to be reported to the record (ORU, OBR-25 `X`).

    Written in the same transaction as the cancellation (`orders.service.cancel_tests`) or the
    rejection (`specimens.service.reject`), which sit below the outbox and cannot build the
    message themselves; `lab.hl7.release.report_withdrawals` turns each row into an ORU within
    seconds and sets `message_id`. A row without `message_id` is a report still owed.
    """

    __tablename__ = "hl7_withdrawal"
    __table_args__ = (
        Index("ix_hl7_withdrawal_unreported", "id", postgresql_where=text("message_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("lab_order.id"), index=True)
    specimen_id: Mapped[int | None] = mapped_column(ForeignKey("specimen.id"))
    ordered_test_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    kind: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(32), default="")
    """The lab's reject reason code (`specimens.service.REJECT_REASONS`), empty for a cancel."""
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    message_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_message.id"))
