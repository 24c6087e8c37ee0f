"""hl7: tests that will not be done, owed to the record (cancelled in the lab, specimen rejected)

Revision ID: 0019_withdrawals
Revises: 0018_analyser_units
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_withdrawals"
down_revision: str | tuple[str, ...] | None = "0018_analyser_units"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_withdrawal",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("order_id", sa.BigInteger(), sa.ForeignKey("lab_order.id"), nullable=False),
        sa.Column("specimen_id", sa.BigInteger(), sa.ForeignKey("specimen.id"), nullable=True),
        sa.Column("ordered_test_ids", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("message_id", sa.BigInteger(), sa.ForeignKey("hl7_message.id"), nullable=True),
    )
    op.create_index("ix_hl7_withdrawal_order_id", "hl7_withdrawal", ["order_id"])
    op.create_index(
        "ix_hl7_withdrawal_unreported",
        "hl7_withdrawal",
        ["id"],
        postgresql_where=sa.text("message_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_hl7_withdrawal_unreported", table_name="hl7_withdrawal")
    op.drop_index("ix_hl7_withdrawal_order_id", table_name="hl7_withdrawal")
    op.drop_table("hl7_withdrawal")
