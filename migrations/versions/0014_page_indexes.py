"""page indexes: the critical results awaiting review are read from an index of their own

The overview counts the critical (LL/HH) results awaiting review and lists the oldest of them.
Without this index both read every result awaiting review and test its flags (10,000 rows with
a million stored at 1 % held); with it they read only the critical ones, in the list's order.

Revision ID: 0014_page_indexes
Revises: 0013_trust
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_page_indexes"
down_revision: str | tuple[str, ...] | None = "0013_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same predicate as lab.results.queries' `_is_critical` with the queue's status, so the
# planner can prove that the overview's queries match it.
CRITICAL_AWAITING_REVIEW = (
    "status = 'awaiting_review' AND ('LL' = ANY (flags) OR 'HH' = ANY (flags))"
)


def upgrade() -> None:
    op.create_index(
        "ix_result_critical_review",
        "result",
        ["recorded_at", "id"],
        postgresql_where=sa.text(CRITICAL_AWAITING_REVIEW),
    )


def downgrade() -> None:
    op.drop_index("ix_result_critical_review", table_name="result")
