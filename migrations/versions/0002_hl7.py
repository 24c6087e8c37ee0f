"""hl7: message log / outbox, held releases, reported results

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("partner", sa.String(length=200), nullable=False),
        sa.Column("sending_application", sa.String(length=100), nullable=False),
        sa.Column("sending_facility", sa.String(length=100), nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("charset", sa.String(length=20), nullable=False),
        sa.Column("commit_ack", sa.Text(), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.BigInteger(), nullable=True),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_message")),
    )
    op.create_index(
        "uq_hl7_message_inbound_key",
        "hl7_message",
        ["sending_application", "sending_facility", "control_id"],
        unique=True,
        postgresql_where=sa.text("direction = 'in' AND control_id <> ''"),
    )
    op.create_index(
        "ix_hl7_message_outbox",
        "hl7_message",
        ["patient_id", "id"],
        unique=False,
        postgresql_where=sa.text(
            "direction = 'out' AND status IN ('queued', 'sent', 'failed', 'dead')"
        ),
    )
    op.create_index("ix_hl7_message_direction_id", "hl7_message", ["direction", "id"])
    op.create_table(
        "hl7_pending_release",
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["lab_order.id"],
            name=op.f("fk_hl7_pending_release_order_id_lab_order"),
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_hl7_pending_release")),
    )
    op.create_index(
        op.f("ix_hl7_pending_release_due_at"), "hl7_pending_release", ["due_at"], unique=False
    )
    op.create_table(
        "hl7_reported_result",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("result_version", sa.Integer(), nullable=False),
        sa.Column("observation_status", sa.String(length=1), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["hl7_message.id"],
            name=op.f("fk_hl7_reported_result_message_id_hl7_message"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["result.id"], name=op.f("fk_hl7_reported_result_result_id_result")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_reported_result")),
    )
    op.create_index(
        "ix_hl7_reported_result_result",
        "hl7_reported_result",
        ["result_id", "result_version"],
        unique=False,
    )
    op.create_index(
        op.f("ix_hl7_reported_result_message_id"),
        "hl7_reported_result",
        ["message_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("hl7_reported_result")
    op.drop_table("hl7_pending_release")
    op.drop_table("hl7_message")
