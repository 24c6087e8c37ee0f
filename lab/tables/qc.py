"""Internal quality control: materials, lots, targets, runs, decisions, locks, the QC queue.

A control *material* has one level; a *lot* of it has an expiry date; a *target* is the mean and
SD of a lot for one test on one analyser (entered, or established from the lot's first 20
accepted points and then fixed). The analyser names a control by the specimen ID it sends
(`qc_control_id`). Control results measured together form a *run* of *points*; the Westgard
decision on a run is stored with every rule that fired and the points behind it. `qc_lock` holds
whether a test is locked on an analyser (always equal to the fold over its runs and overrides).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
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

ANY_ANALYSER = ""  # a control ID, target or policy that holds on every analyser


class QcMaterial(Base):
    __tablename__ = "qc_material"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    level: Mapped[int] = mapped_column(SmallInteger)
    manufacturer: Mapped[str] = mapped_column(String(80), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class QcLot(Base):
    __tablename__ = "qc_lot"
    __table_args__ = (UniqueConstraint("material_id", "lot_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("qc_material.id"))
    lot_number: Mapped[str] = mapped_column(String(40))
    expires_on: Mapped[date] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    material: Mapped[QcMaterial] = relationship(lazy="joined")


class QcControlId(Base):
    """What an analyser sends as the control's specimen ID (O-3), and the lot it stands for."""

    __tablename__ = "qc_control_id"
    __table_args__ = (UniqueConstraint("control_id", "instrument"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    control_id: Mapped[str] = mapped_column(String(80))
    instrument: Mapped[str] = mapped_column(String(64), default=ANY_ANALYSER)
    lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"))

    lot: Mapped[QcLot] = relationship(lazy="joined")


class TargetSource(StrEnum):
    ENTERED = "entered"  # typed in (the lab's own figures, or the insert's for a start)
    ESTABLISHED = "established"  # mean and sample SD of the lot's first 20 accepted points
    ESTABLISHING = "establishing"  # collecting those points: nothing is judged against it yet


class QcTarget(Base):
    __tablename__ = "qc_target"
    __table_args__ = (UniqueConstraint("lot_id", "instrument", "test_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"))
    instrument: Mapped[str] = mapped_column(String(64), default=ANY_ANALYSER)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    unit: Mapped[str] = mapped_column(String(30))
    mean: Mapped[Decimal | None] = mapped_column(Numeric)
    sd: Mapped[Decimal | None] = mapped_column(Numeric)
    source: Mapped[str] = mapped_column(String(16), default=TargetSource.ENTERED)
    set_by: Mapped[str] = mapped_column(String(64), default="")
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    lot: Mapped[QcLot] = relationship(lazy="joined")


class QcPolicy(Base):
    """How a test is controlled on an analyser: allowable total error and bias (for the sigma
    that chooses the rules) or an explicit rule set."""

    __tablename__ = "qc_policy"
    __table_args__ = (UniqueConstraint("instrument", "test_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64), default=ANY_ANALYSER)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    tea_percent: Mapped[Decimal | None] = mapped_column(Numeric)
    bias_percent: Mapped[Decimal | None] = mapped_column(Numeric)
    rules: Mapped[list[str] | None] = mapped_column(ARRAY(String(8)))
    note: Mapped[str] = mapped_column(Text, default="")


class RunStatus(StrEnum):
    ACCEPTED = "accepted"  # in control (warnings may have fired)
    REJECTED = "rejected"  # a rejection rule fired: the test is locked on the analyser
    ESTABLISHING = "establishing"  # only points of lots still being established


class RunSource(StrEnum):
    ANALYSER = "analyser"
    MANUAL = "manual"


class QcRun(Base):
    __tablename__ = "qc_run"
    __table_args__ = (
        Index("ix_qc_run_history", "instrument", "test_id", "run_at", "id"),
        UniqueConstraint("instrument", "test_id", "run_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_key: Mapped[str] = mapped_column(String(64))  # the same run sent again adds nothing
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    rules_applied: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    first_rule: Mapped[str] = mapped_column(String(8), default="")
    all_levels: Mapped[bool] = mapped_column(Boolean, default=False)
    entered_by: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text, default="")
    judged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    points: Mapped[list[QcPoint]] = relationship(
        back_populates="run", order_by="QcPoint.level", lazy="selectin"
    )
    violations: Mapped[list[QcViolation]] = relationship(
        back_populates="run", order_by="QcViolation.id", lazy="selectin"
    )


class QcPoint(Base):
    """One control result in a run, with the target it was judged against (copied, so the
    decision can be read back as it was made even after the target changes)."""

    __tablename__ = "qc_point"
    __table_args__ = (
        Index("ix_qc_point_chart", "lot_id", "run_id"),
        UniqueConstraint("run_id", "level"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"))
    level: Mapped[int] = mapped_column(SmallInteger)
    lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"))
    value: Mapped[Decimal] = mapped_column(Numeric)
    unit: Mapped[str] = mapped_column(String(30))
    mean: Mapped[Decimal | None] = mapped_column(Numeric)  # None while the lot is established
    sd: Mapped[Decimal | None] = mapped_column(Numeric)
    z: Mapped[float | None] = mapped_column(Float)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)  # its run was rejected
    qc_result_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("qc_result.id"), unique=True
    )

    run: Mapped[QcRun] = relationship(back_populates="points")


class QcViolation(Base):
    """One rule that fired on a run, and the points it rests on."""

    __tablename__ = "qc_violation"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)
    rule: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(8))  # warning | reject
    scope: Mapped[str] = mapped_column(String(24))
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)  # [{run_id, level, z}]

    run: Mapped[QcRun] = relationship(back_populates="violations")


class LockState(StrEnum):
    IN_CONTROL = "in_control"
    LOCKED = "locked"


class QcLock(Base):
    """The lock of one test on one analyser: read by the results' hot path."""

    __tablename__ = "qc_lock"
    __table_args__ = (UniqueConstraint("instrument", "test_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    state: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(8), default="")
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the last event folded in: a later event steps the lock, an earlier one refolds it
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    last_event_kind: Mapped[str] = mapped_column(String(16), default="")


class QcOverride(Base):
    """A person's documented decision to release a lock without an in-control run."""

    __tablename__ = "qc_override"
    __table_args__ = (Index("ix_qc_override_test", "instrument", "test_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_by_run_id: Mapped[int | None] = mapped_column(BigInteger)
    person: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class ProblemStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"  # taken into a run after the cause was fixed
    DISCARDED = "discarded"  # a person decided it is not to be used, with a note


class QcProblem(Base):
    """A control result that could not be judged (the QC queue): never applied, never dropped."""

    __tablename__ = "qc_problem"
    __table_args__ = (Index("ix_qc_problem_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    qc_result_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("qc_result.id"), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ProblemStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    handled_by: Mapped[str | None] = mapped_column(String(64))
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("qc_run.id"))


class MovingStatistic(StrEnum):
    MEAN = "mean"
    MEDIAN = "median"


class QcMovingSetting(Base):
    """Patient-based real-time QC of one test on an analyser: a moving mean or median of the
    last `block_size` patient results inside the truncation limits, alarmed outside the control
    limits (Badrick et al., Clin Chem 2019;65:962)."""

    __tablename__ = "qc_moving_setting"
    __table_args__ = (UniqueConstraint("instrument", "test_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64), default=ANY_ANALYSER)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    statistic: Mapped[str] = mapped_column(String(8), default=MovingStatistic.MEAN)
    block_size: Mapped[int] = mapped_column(Integer)
    truncation_low: Mapped[Decimal] = mapped_column(Numeric)
    truncation_high: Mapped[Decimal] = mapped_column(Numeric)
    target: Mapped[Decimal] = mapped_column(Numeric)
    control_low: Mapped[Decimal] = mapped_column(Numeric)
    control_high: Mapped[Decimal] = mapped_column(Numeric)
    note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class QcMovingAlarm(Base):
    """A drift of the patient-based QC of one test on one analyser: raised when the moving
    statistic left its control limits, cleared when it came back (`cleared_at`). At most one
    open alarm per test and analyser."""

    __tablename__ = "qc_moving_alarm"
    __table_args__ = (
        Index(
            "uq_qc_moving_alarm_open",
            "instrument",
            "test_id",
            unique=True,
            postgresql_where=text("cleared_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instrument: Mapped[str] = mapped_column(String(64))
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    setting_id: Mapped[int] = mapped_column(ForeignKey("qc_moving_setting.id"))
    statistic: Mapped[str] = mapped_column(String(8))
    block_size: Mapped[int] = mapped_column(Integer)
    control_low: Mapped[Decimal] = mapped_column(Numeric)
    control_high: Mapped[Decimal] = mapped_column(Numeric)
    value: Mapped[float] = mapped_column(Float)  # the statistic when the alarm was raised
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cleared_value: Mapped[float | None] = mapped_column(Float)
