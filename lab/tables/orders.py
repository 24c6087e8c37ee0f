"""Orders from the record (or entered in the lab) and the tests they ask for."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base
from lab.tables.catalog import LabTest


class Priority(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    STAT = "stat"


class TestStatus(StrEnum):
    ORDERED = "ordered"
    IN_PROGRESS = "in_progress"
    RESULTED = "resulted"
    VERIFIED = "verified"
    CANCELLED = "cancelled"


class OrderStatus(StrEnum):
    """An order is active until every test is verified or cancelled (`orders.service`)."""

    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


OPEN_TEST_STATUSES = frozenset({TestStatus.ORDERED, TestStatus.IN_PROGRESS})


class Order(Base):
    __tablename__ = "lab_order"
    __table_args__ = (UniqueConstraint("placer_namespace", "placer_order_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The record's number for the order (ORC-2/OBR-2) and ours (ORC-3/OBR-3).
    placer_order_number: Mapped[str] = mapped_column(String(64), index=True)
    placer_namespace: Mapped[str] = mapped_column(String(64), default="")
    filler_order_number: Mapped[str] = mapped_column(String(32), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    ordering_clinician: Mapped[str] = mapped_column(String(200), default="")
    ordering_location: Mapped[str] = mapped_column(String(200), default="")
    priority: Mapped[str] = mapped_column(String(8), default="routine")  # routine | urgent | stat
    clinical_info: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.ACTIVE.value)
    source: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    tests: Mapped[list[OrderedTest]] = relationship(
        back_populates="order", order_by="OrderedTest.id", lazy="selectin"
    )


class OrderedTest(Base):
    """One test of an order, with its own status."""

    __tablename__ = "ordered_test"
    __table_args__ = (
        Index("ix_ordered_test_specimen_status", "specimen_id", "status"),
        Index(
            "ix_ordered_test_due",
            "due_at",
            postgresql_where=text(
                "status IN ('ordered', 'in_progress', 'resulted') AND due_at IS NOT NULL"
            ),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("lab_order.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    specimen_id: Mapped[int | None] = mapped_column(ForeignKey("specimen.id"))
    panel_code: Mapped[str | None] = mapped_column(String(20))
    # ordered -> in_progress -> resulted -> verified; cancelled
    status: Mapped[str] = mapped_column(String(16), default="ordered")
    add_on: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # When the result is due: receipt of the tube + the test's turnaround target (if it has one).
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str] = mapped_column(Text, default="")

    order: Mapped[Order] = relationship(back_populates="tests")
    # Many-to-one by primary key: a lazy load is answered from the identity map once loaded.
    test: Mapped[LabTest] = relationship(lazy="select")
