"""The audit trail's table: who (person or machine) did or saw what, when, before and after.

Rows are only ever inserted; the migration installs a trigger that refuses UPDATE and DELETE,
so not even a bug in the code can rewrite history. Writing and reading it: `lab.audit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lab.db import Base


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_patient_at", "patient_id", "at"),
        # The sealer's rows since its last complete round (lab/audit_chain.py); BRIN: the
        # transaction ids grow with the table's pages, and it costs next to nothing to keep.
        Index("ix_audit_event_xact", "xact", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(BigInteger)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    detail: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(200), server_default="", default="")
    """The credential or connection used (`token:12`, `session:34`, an address)."""
    xact: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    """The inserting transaction (lab/audit_chain.py seals a row once it is surely committed)."""


class AuditSeal(Base):
    """One link of the audit chain: SHA-256 of the previous link's hash and one audit row."""

    __tablename__ = "audit_seal"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    audit_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    chain_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sealed_below: Mapped[int | None] = mapped_column(BigInteger)
    """Every audit row of a transaction older than this was sealed when this seal was made
    (the sealer's next round starts there; NULL: seals made before it was kept)."""
