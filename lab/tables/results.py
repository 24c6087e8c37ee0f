"""Results and their immutable versions.

`Result` is one test's result on one specimen and carries the *current* state for fast queues;
`ResultVersion` rows are never updated or deleted (a trigger in the migration refuses it): every
change, whether a rerun, a verification, a correction or a cancellation, adds a version.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base


# preliminary -> awaiting_review -> verified -> corrected; cancelled
class ResultStatus(StrEnum):
    PRELIMINARY = "preliminary"
    AWAITING_REVIEW = "awaiting_review"
    VERIFIED = "verified"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"


R = ResultStatus
# Released to the record: what clinicians may read.
RELEASED = frozenset({R.VERIFIED, R.CORRECTED})


class Result(Base):
    __tablename__ = "result"
    __table_args__ = (
        Index("ix_result_status_recorded", "status", "recorded_at"),
        Index("ix_result_patient_test_observed", "patient_id", "test_id", "observed_at"),
        Index(
            "ix_result_review_queue",
            "urgency",
            "recorded_at",
            "id",
            postgresql_where=text("status = 'awaiting_review'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ordered_test_id: Mapped[int] = mapped_column(ForeignKey("ordered_test.id"), unique=True)
    specimen_id: Mapped[int] = mapped_column(ForeignKey("specimen.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    # Current state, copied from the newest version.
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))
    # The tube's urgency (0 stat, 1 urgent, 2 routine), so the review queue sorts by an index.
    urgency: Mapped[int] = mapped_column(SmallInteger, default=2, server_default=text("2"))
    value_numeric: Mapped[Decimal | None] = mapped_column(Numeric)
    value_text: Mapped[str | None] = mapped_column(Text)
    comparator: Mapped[str | None] = mapped_column(String(2))  # "<" or ">" for "<5"
    unit: Mapped[str | None] = mapped_column(String(30))
    flags: Mapped[list[str]] = mapped_column(ARRAY(String(4)), default=list)
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by: Mapped[str | None] = mapped_column(String(64))

    versions: Mapped[list[ResultVersion]] = relationship(
        order_by="ResultVersion.version", lazy="selectin", back_populates="result"
    )


class ResultVersion(Base):
    __tablename__ = "result_version"
    __table_args__ = (UniqueConstraint("result_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("result.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    value_numeric: Mapped[Decimal | None] = mapped_column(Numeric)
    value_text: Mapped[str | None] = mapped_column(Text)
    comparator: Mapped[str | None] = mapped_column(String(2))
    unit: Mapped[str | None] = mapped_column(String(30))
    flags: Mapped[list[str]] = mapped_column(ARRAY(String(4)), default=list)
    reference_low: Mapped[Decimal | None] = mapped_column(Numeric)
    reference_high: Mapped[Decimal | None] = mapped_column(Numeric)
    instrument_flags: Mapped[str] = mapped_column(String(64), default="")
    instrument: Mapped[str] = mapped_column(String(64), default="")
    operator: Mapped[str] = mapped_column(String(64), default="")
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    critical_notification: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    result: Mapped[Result] = relationship(back_populates="versions")
