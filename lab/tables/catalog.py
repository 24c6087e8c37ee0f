"""The test catalog: tests, their reference intervals, and panels of tests."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base


class LabTest(Base):
    """One analysis the lab performs ("analyse"), with how its result is written and judged."""

    __tablename__ = "lab_test"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name_nb: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    loinc: Mapped[str | None] = mapped_column(String(20), index=True)
    # Other LOINC codes senders use for the same test (accepted in orders, never sent):
    # e.g. the mass-concentration code 2160-0 for creatinine reported in umol/L.
    loinc_aliases: Mapped[list[str]] = mapped_column(
        ARRAY(String(20)), default=list, server_default="{}"
    )
    nlk: Mapped[str | None] = mapped_column(String(20))
    specimen_type: Mapped[str] = mapped_column(String(10))  # HL7 table 0487
    container: Mapped[str] = mapped_column(String(20))  # EDTA, LIHEP, SERUM, FLUORIDE, ...
    result_type: Mapped[str] = mapped_column(String(10))  # numeric | text | coded
    unit: Mapped[str | None] = mapped_column(String(30))  # UCUM, or shown as ucum says below
    # The unit in UCUM when the lab writes it otherwise (`mIU/L` shown, `m[IU]/L` in UCUM).
    ucum: Mapped[str | None] = mapped_column(String(30))
    decimals: Mapped[int] = mapped_column(Integer, default=0)
    critical_low: Mapped[Decimal | None] = mapped_column(Numeric)
    critical_high: Mapped[Decimal | None] = mapped_column(Numeric)
    critical_source: Mapped[str] = mapped_column(Text, default="")
    allowed_codes: Mapped[list[str] | None] = mapped_column(ARRAY(String(40)))
    turnaround_minutes: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    reference_intervals: Mapped[list[ReferenceInterval]] = relationship(
        back_populates="test", order_by="ReferenceInterval.id", lazy="selectin"
    )


class ReferenceInterval(Base):
    """Reference interval for one sex (or both) and one age band, in days of age."""

    __tablename__ = "reference_interval"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"), index=True)
    sex: Mapped[str] = mapped_column(String(1), default="")  # "" = both
    age_min_days: Mapped[int] = mapped_column(Integer, default=0)  # inclusive
    age_max_days: Mapped[int] = mapped_column(Integer)  # exclusive
    low: Mapped[Decimal | None] = mapped_column(Numeric)
    high: Mapped[Decimal | None] = mapped_column(Numeric)
    source: Mapped[str] = mapped_column(Text, default="")

    test: Mapped[LabTest] = relationship(back_populates="reference_intervals")


class Panel(Base):
    __tablename__ = "panel"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name_nb: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))

    members: Mapped[list[PanelMember]] = relationship(
        order_by="PanelMember.position", lazy="selectin"
    )


class PanelMember(Base):
    __tablename__ = "panel_member"
    __table_args__ = (UniqueConstraint("panel_id", "test_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("panel.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("lab_test.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)

    test: Mapped[LabTest] = relationship(lazy="joined")


class CatalogVersion(Base):
    """One row whose number moves with every catalog change, in the changing transaction."""

    __tablename__ = "catalog_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
