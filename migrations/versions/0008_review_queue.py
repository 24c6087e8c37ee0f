"""review queue: a result carries its tube's urgency, so the queue reads from an index

The review queue lists results awaiting review, stat first, then oldest. With the urgency
copied onto the result (as migration 0006 did for tubes) that order is a partial index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | tuple[str, ...] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "result",
        sa.Column("urgency", sa.SmallInteger(), server_default=sa.text("2"), nullable=False),
    )
    op.execute(
        """
        UPDATE result SET urgency = specimen.urgency FROM specimen
        WHERE specimen.id = result.specimen_id AND specimen.urgency <> 2
        """
    )
    op.create_index(
        "ix_result_review_queue",
        "result",
        ["urgency", "recorded_at", "id"],
        postgresql_where=sa.text("status = 'awaiting_review'"),
    )


def downgrade() -> None:
    op.drop_index("ix_result_review_queue", table_name="result")
    op.drop_column("result", "urgency")
