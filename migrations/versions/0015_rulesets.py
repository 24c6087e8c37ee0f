"""rule sets: versioned rule documents (autoverification, formulas, reflex) and shadow decisions

A version's kind, number and text never change (a trigger refuses it, and any DELETE): a result
judged by version N can always show what N said. Only the state moves; one active and at most
one shadow version per kind (partial unique indexes).

Revision ID: 0015_rulesets
Revises: 0014_page_indexes
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_rulesets"
down_revision: str | tuple[str, ...] | None = "0014_page_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_set_version",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("state", sa.String(10), nullable=False, server_default="draft"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True)),
        sa.Column("state_changed_by", sa.String(64)),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.Column("activated_by", sa.String(64)),
        sa.UniqueConstraint("kind", "version", name=op.f("uq_rule_set_version_kind")),
        sa.CheckConstraint(
            "kind IN ('autoverification', 'formulas', 'reflex')",
            name=op.f("ck_rule_set_version_known_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'shadow', 'active', 'retired')",
            name=op.f("ck_rule_set_version_known_state"),
        ),
    )
    op.create_index(
        "uq_rule_set_version_one_active",
        "rule_set_version",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_index(
        "uq_rule_set_version_one_shadow",
        "rule_set_version",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("state = 'shadow'"),
    )
    op.execute(
        """
        CREATE FUNCTION rule_set_version_keep_text() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'rule set versions are never deleted';
            END IF;
            IF NEW.kind <> OLD.kind OR NEW.version <> OLD.version OR NEW.text <> OLD.text
               OR NEW.sha256 <> OLD.sha256 THEN
                RAISE EXCEPTION 'a rule set version never changes; load a new version';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER rule_set_version_keep_text BEFORE UPDATE OR DELETE ON rule_set_version "
        "FOR EACH ROW EXECUTE FUNCTION rule_set_version_keep_text()"
    )
    op.create_table(
        "rule_shadow_decision",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("result_id", sa.BigInteger(), sa.ForeignKey("result.id"), nullable=False),
        sa.Column("result_version", sa.Integer(), nullable=False),
        sa.Column(
            "rule_set_version_id",
            sa.BigInteger(),
            sa.ForeignKey("rule_set_version.id"),
            nullable=False,
        ),
        sa.Column("autoverify", sa.Boolean(), nullable=False),
        sa.Column("holds", postgresql.JSONB(), nullable=False, server_default="[]"),
        sa.Column(
            "decided_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint(
            "result_id",
            "result_version",
            "rule_set_version_id",
            name=op.f("uq_rule_shadow_decision_result_id"),
        ),
    )
    op.create_index(
        op.f("ix_rule_shadow_decision_result_id"), "rule_shadow_decision", ["result_id"]
    )
    op.create_index(
        op.f("ix_rule_shadow_decision_rule_set_version_id"),
        "rule_shadow_decision",
        ["rule_set_version_id"],
    )


def downgrade() -> None:
    op.drop_table("rule_shadow_decision")
    op.execute("DROP TRIGGER IF EXISTS rule_set_version_keep_text ON rule_set_version")
    op.execute("DROP FUNCTION IF EXISTS rule_set_version_keep_text()")
    op.drop_table("rule_set_version")
