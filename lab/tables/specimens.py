"""Specimens (one per container), their aliquots, and the timeline of each."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base
from lab.tables.lifecycle import Lifecycle, sql_list


class SpecimenStatus(StrEnum):
    EXPECTED = "expected"
    COLLECTED = "collected"
    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    DISPOSED = "disposed"


_S = SpecimenStatus
# Every move a tube may make; `specimens.service` moves a tube only through this table.
SPECIMEN_LIFECYCLE = Lifecycle(
    "specimen",
    {
        _S.EXPECTED: {_S.COLLECTED, _S.RECEIVED, _S.REJECTED},
        _S.COLLECTED: {_S.RECEIVED, _S.REJECTED},
        _S.RECEIVED: {_S.IN_PROGRESS, _S.COMPLETED, _S.REJECTED, _S.DISPOSED},
        _S.IN_PROGRESS: {_S.COMPLETED, _S.REJECTED, _S.DISPOSED},
        _S.COMPLETED: {_S.IN_PROGRESS, _S.DISPOSED},
        _S.REJECTED: {_S.DISPOSED},
        _S.DISPOSED: set(),
    },
)
# Not in the lab yet (the work list of tubes to receive).
SPECIMEN_NOT_YET_IN_LAB = frozenset({_S.EXPECTED, _S.COLLECTED})
# In the lab, with work to do (the benches' work lists).
SPECIMEN_IN_LAB = frozenset({_S.RECEIVED, _S.IN_PROGRESS})
# No result is recorded on the tube any more: refused, or thrown away.
SPECIMEN_FINISHED = frozenset({_S.REJECTED, _S.DISPOSED})


class Specimen(Base):
    __tablename__ = "specimen"
    __table_args__ = (
        Index("ix_specimen_status_created", "status", "created_at"),
        # The work lists (migration 0006): each is a range scan of one of these.
        Index(
            "ix_specimen_awaiting_receipt",
            "urgency",
            "created_at",
            "id",
            postgresql_where=text(f"status IN ({sql_list(SPECIMEN_NOT_YET_IN_LAB)})"),
        ),
        Index(
            "ix_specimen_in_lab",
            "container",
            "urgency",
            "received_at",
            "id",
            postgresql_where=text(f"status IN ({sql_list(SPECIMEN_IN_LAB)})"),
        ),
        Index(
            "ix_specimen_in_lab_all_benches",
            "urgency",
            "received_at",
            "id",
            postgresql_where=text(f"status IN ({sql_list(SPECIMEN_IN_LAB)})"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    accession_number: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("lab_order.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("specimen.id"))
    specimen_type: Mapped[str] = mapped_column(String(10))
    container: Mapped[str] = mapped_column(String(20))
    # expected -> collected -> received -> in_progress -> completed; rejected; disposed
    status: Mapped[str] = mapped_column(String(16), default=SpecimenStatus.EXPECTED.value)
    # The order's priority, copied so the work lists sort by an index: 0 stat, 1 urgent, 2 routine.
    urgency: Mapped[int] = mapped_column(SmallInteger, default=2, server_default=text("2"))
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejection_reason: Mapped[str | None] = mapped_column(String(32))
    rejection_comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    events: Mapped[list[SpecimenEvent]] = relationship(
        order_by="SpecimenEvent.id", lazy="select", back_populates="specimen"
    )


class SpecimenEvent(Base):
    """One line of a specimen's timeline: what happened, who did it, and when."""

    __tablename__ = "specimen_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("specimen.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    event: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")

    specimen: Mapped[Specimen] = relationship(back_populates="events")
