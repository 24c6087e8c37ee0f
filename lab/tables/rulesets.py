"""Tables of the versioned rule documents and of the decisions made in shadow.

A rule document (an autoverification rule set, a formula set or a reflex set) is stored once per
version and never changed: the migration's trigger refuses any change of its kind, version or
text, and any DELETE. Only its state moves: draft -> shadow -> active -> retired. At most one
version of each kind is active and at most one runs in shadow (partial unique indexes), so
"the active rule set" is always one row, and a result keeps the version that judged it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lab.db import Base


class RuleKind(StrEnum):
    AUTOVERIFICATION = "autoverification"
    FORMULAS = "formulas"
    REFLEX = "reflex"


class RuleState(StrEnum):
    DRAFT = "draft"  # loaded and checked, decides nothing
    SHADOW = "shadow"  # decides beside the active version; its decisions are only recorded
    ACTIVE = "active"  # decides
    RETIRED = "retired"  # was active; kept so results judged by it can name it


class RuleSetVersion(Base):
    __tablename__ = "rule_set_version"
    __table_args__ = (
        UniqueConstraint("kind", "version"),
        Index(
            "uq_rule_set_version_one_active",
            "kind",
            unique=True,
            postgresql_where=text("state = 'active'"),
        ),
        Index(
            "uq_rule_set_version_one_shadow",
            "kind",
            unique=True,
            postgresql_where=text("state = 'shadow'"),
        ),
        CheckConstraint("kind IN ('autoverification', 'formulas', 'reflex')", name="known_kind"),
        CheckConstraint("state IN ('draft', 'shadow', 'active', 'retired')", name="known_state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(10), default=RuleState.DRAFT)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(64))
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state_changed_by: Mapped[str | None] = mapped_column(String(64))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_by: Mapped[str | None] = mapped_column(String(64))


class RuleShadowDecision(Base):
    """What a rule set version running in shadow decided for one measured result."""

    __tablename__ = "rule_shadow_decision"
    __table_args__ = (UniqueConstraint("result_id", "result_version", "rule_set_version_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("result.id"), index=True)
    result_version: Mapped[int] = mapped_column(Integer)
    rule_set_version_id: Mapped[int] = mapped_column(ForeignKey("rule_set_version.id"), index=True)
    autoverify: Mapped[bool] = mapped_column(Boolean)
    holds: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
