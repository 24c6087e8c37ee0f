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
from lab.tables.lifecycle import Lifecycle, sql_list


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


_T = TestStatus
# The moves of one ordered test. A rerun may move a resulted test back to in_progress (a
# preliminary value) or to resulted again; cancelling a result cancels its test, even verified.
TEST_LIFECYCLE = Lifecycle(
    "ordered test",
    {
        _T.ORDERED: {_T.IN_PROGRESS, _T.RESULTED, _T.CANCELLED},
        _T.IN_PROGRESS: {_T.IN_PROGRESS, _T.RESULTED, _T.CANCELLED},
        _T.RESULTED: {_T.IN_PROGRESS, _T.RESULTED, _T.VERIFIED, _T.CANCELLED},
        _T.VERIFIED: {_T.CANCELLED},
        _T.CANCELLED: set(),
    },
)
# Waiting for a result from the bench or an analyser.
TEST_PENDING = frozenset({_T.ORDERED, _T.IN_PROGRESS})
# Not yet verified or cancelled: the order is still active because of it.
TEST_OPEN = frozenset({_T.ORDERED, _T.IN_PROGRESS, _T.RESULTED})
# Nothing more will happen to it.
TEST_CLOSED = frozenset({_T.VERIFIED, _T.CANCELLED})

_O = OrderStatus
# An order's status follows from its tests (`orders.service.refresh_status`): an add-on test
# makes a completed order active again; a cancelled order takes no new test.
ORDER_LIFECYCLE = Lifecycle(
    "order",
    {
        _O.ACTIVE: {_O.ACTIVE, _O.COMPLETED, _O.CANCELLED},
        _O.COMPLETED: {_O.ACTIVE, _O.COMPLETED, _O.CANCELLED},
        _O.CANCELLED: {_O.CANCELLED},
    },
)
ORDER_CLOSED = frozenset({_O.COMPLETED, _O.CANCELLED})


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
            postgresql_where=text(f"status IN ({sql_list(TEST_OPEN)}) AND due_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("lab_order.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    specimen_id: Mapped[int | None] = mapped_column(ForeignKey("specimen.id"))
    panel_code: Mapped[str | None] = mapped_column(String(20))
    # ordered -> in_progress -> resulted -> verified; cancelled
    status: Mapped[str] = mapped_column(String(16), default=TestStatus.ORDERED.value)
    add_on: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # When the result is due: receipt of the tube + the test's turnaround target (if it has one).
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    # Added by the lab, not the ordering clinician: "calculated EGFR (formula set v1)" or
    # "reflex TSH-FT4 (reflex set v1) on result 123"; "" for a test the record ordered.
    added_by_rule: Mapped[str] = mapped_column(String(120), default="", server_default="")

    order: Mapped[Order] = relationship(back_populates="tests")
    # Many-to-one by primary key: a lazy load is answered from the identity map once loaded.
    test: Mapped[LabTest] = relationship(lazy="select")
