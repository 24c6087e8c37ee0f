"""turnaround: analyser message timings copied from the archive, and the archive cursor

Revision ID: 0005
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "turnaround_analyser_message",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("specimen_ids", sa.String(length=400), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("last_frame_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turnaround_analyser_message")),
        sa.UniqueConstraint(
            "instrument",
            "last_frame_at",
            name=op.f("uq_turnaround_analyser_message_instrument"),
        ),
    )
    op.create_index(
        "ix_turnaround_analyser_message_acknowledged_at",
        "turnaround_analyser_message",
        ["acknowledged_at"],
    )
    op.create_table(
        "turnaround_archive_cursor",
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_turnaround_archive_cursor")),
    )


def downgrade() -> None:
    op.drop_table("turnaround_archive_cursor")
    op.drop_index(
        "ix_turnaround_analyser_message_acknowledged_at", table_name="turnaround_analyser_message"
    )
    op.drop_table("turnaround_analyser_message")
