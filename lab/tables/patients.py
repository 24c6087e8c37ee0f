"""Patients, their identifiers, and the record of merges."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lab.db import Base


class Patient(Base):
    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    family_name: Mapped[str] = mapped_column(String(200))
    given_name: Mapped[str] = mapped_column(String(200), default="")
    birth_date: Mapped[date | None] = mapped_column(Date)
    # HL7 table 0001 administrative sex: F, M, O (other), U (unknown)
    sex: Mapped[str] = mapped_column(String(1), default="U")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", order_by="PatientIdentifier.id", lazy="select"
    )


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    __table_args__ = (UniqueConstraint("authority", "value"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    value: Mapped[str] = mapped_column(String(64), index=True)
    authority: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


class PatientMerge(Base):
    """A merge: every order and result of `merged` now belongs to `surviving`."""

    __tablename__ = "patient_merge"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    surviving_patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    merged_patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    merged_by: Mapped[str] = mapped_column(String(64))
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    moved_orders: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
