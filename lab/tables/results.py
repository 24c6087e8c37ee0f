"""Results and their immutable versions.

`Result` is one test's result on one specimen and carries the *current* state for fast queues;
`ResultVersion` rows are never updated or deleted (a trigger in the migration refuses it): every
change, whether a rerun, a verification, a correction or a cancellation, adds a version.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base
from lab.tables.lifecycle import Lifecycle


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
# What the record is told about: released values, and cancelled tests (OBX-11 X or D).
REPORTABLE = frozenset({R.VERIFIED, R.CANCELLED})
# Every move of a result; each one adds a version (`results.service`). A rerun replaces a
# value not yet released; a released one is corrected; anything but a cancelled one is
# cancelled; a preliminary value is not verified.
RESULT_LIFECYCLE = Lifecycle(
    "result",
    {
        R.PRELIMINARY: {R.PRELIMINARY, R.AWAITING_REVIEW, R.CANCELLED},
        R.AWAITING_REVIEW: {R.PRELIMINARY, R.AWAITING_REVIEW, R.VERIFIED, R.CANCELLED},
        R.VERIFIED: {R.CORRECTED, R.CANCELLED},
        R.CORRECTED: {R.CORRECTED, R.CANCELLED},
        R.CANCELLED: set(),
    },
)


class Result(Base):
    __tablename__ = "result"
    __table_args__ = (
        Index("ix_result_status_recorded", "status", "recorded_at"),
        # A patient's history of a test, newest measured first (migration 0022).
        Index(
            "ix_result_patient_history",
            "patient_id",
            "test_id",
            text("coalesce(observed_at, recorded_at) DESC"),
            text("id DESC"),
        ),
        Index(
            "ix_result_review_queue",
            "urgency",
            "recorded_at",
            "id",
            postgresql_where=text(f"status = '{ResultStatus.AWAITING_REVIEW.value}'"),
        ),
        # The overview's critical results awaiting review (migration 0014_page_indexes).
        Index(
            "ix_result_critical_review",
            "recorded_at",
            "id",
            postgresql_where=text(
                f"status = '{ResultStatus.AWAITING_REVIEW.value}' "
                "AND ('LL' = ANY (flags) OR 'HH' = ANY (flags))"
            ),
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
    # Why it waits for a person, empty when nothing holds it: [{"code": "delta", "text": "...",
    # "key": "delta", "params": {...}}] (`lab.rules.model.Hold`).
    holds: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # The autoverification rule set version that judged it (None: no rule set was active).
    ruleset_version: Mapped[int | None] = mapped_column(Integer)

    versions: Mapped[list[ResultVersion]] = relationship(
        order_by="ResultVersion.version", lazy="selectin", back_populates="result"
    )
    measurements: Mapped[list[StoredMeasurement]] = relationship(
        order_by="StoredMeasurement.number",
        lazy="selectin",
        back_populates="result",
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
    instrument_flags: Mapped[str] = mapped_column(String(200), default="")
    instrument: Mapped[str] = mapped_column(String(64), default="")
    operator: Mapped[str] = mapped_column(String(64), default="")
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The measurement this version reports (the newest, or the one a reviewer chose).
    measurement_id: Mapped[int | None] = mapped_column(ForeignKey("measurement.id"))
    # The judgement kept with the version: every hold, the rule set version that made it, and
    # what the reviewer is shown of it (the delta with its limit, implausible, critical, rerun).
    holds: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    ruleset_version: Mapped[int | None] = mapped_column(Integer)
    judgement: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    author: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    critical_notification: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    result: Mapped[Result] = relationship(back_populates="versions")


class MeasurementOrigin(StrEnum):
    """How a measurement came about (shown to the reviewer who chooses the one to report)."""

    FIRST = "first"  # the first measurement of the test
    RERUN = "rerun"  # measured again on the same analyser
    DILUTION = "dilution"  # measured on a dilution (the analyser's dilution qualifier)
    REPEAT = "repeat"  # measured again on another analyser or by hand


class StoredMeasurement(Base):
    """One measurement of an ordered test, as it arrived: a test may have several (a rerun, a
    dilution, a repeat on another analyser). Never updated but for the review mark."""

    __tablename__ = "measurement"
    __table_args__ = (
        UniqueConstraint("result_id", "number"),
        Index(
            "ix_measurement_waiting",
            "recorded_at",
            postgresql_where=text("after_release AND reviewed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("result.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per result, in arrival order
    specimen_id: Mapped[int] = mapped_column(ForeignKey("specimen.id"))  # the tube measured
    origin: Mapped[str] = mapped_column(String(16))
    preliminary: Mapped[bool] = mapped_column(Boolean, default=False)
    value_numeric: Mapped[Decimal | None] = mapped_column(Numeric)
    value_text: Mapped[str | None] = mapped_column(Text)
    comparator: Mapped[str | None] = mapped_column(String(2))
    unit: Mapped[str | None] = mapped_column(String(30))
    # What the analyser sent, when a unit conversion changed the value or the unit.
    original_value: Mapped[str] = mapped_column(Text, default="")
    original_unit: Mapped[str] = mapped_column(String(40), default="")
    dilution: Mapped[str] = mapped_column(String(20), default="")
    instrument: Mapped[str] = mapped_column(String(64), default="")
    operator: Mapped[str] = mapped_column(String(64), default="")
    instrument_flags: Mapped[str] = mapped_column(String(200), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(64))
    # A measurement that arrived after its result was released waits for a look.
    after_release: Mapped[bool] = mapped_column(Boolean, default=False)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))

    result: Mapped[Result] = relationship(back_populates="measurements")
