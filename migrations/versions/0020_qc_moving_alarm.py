"""qc: alarms of patient-based QC (a moving mean or median out of its control limits)

Revision ID: 0020_qc_moving_alarm
Revises: 0019_withdrawals
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_qc_moving_alarm"
down_revision: str | tuple[str, ...] | None = "0019_withdrawals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qc_moving_alarm",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), sa.ForeignKey("lab_test.id"), nullable=False),
        sa.Column(
            "setting_id", sa.BigInteger(), sa.ForeignKey("qc_moving_setting.id"), nullable=False
        ),
        sa.Column("statistic", sa.String(length=8), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("control_low", sa.Numeric(), nullable=False),
        sa.Column("control_high", sa.Numeric(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_value", sa.Float(), nullable=True),
    )
    op.create_index(
        "uq_qc_moving_alarm_open",
        "qc_moving_alarm",
        ["instrument", "test_id"],
        unique=True,
        postgresql_where=sa.text("cleared_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_qc_moving_alarm_open", table_name="qc_moving_alarm")
    op.drop_table("qc_moving_alarm")
