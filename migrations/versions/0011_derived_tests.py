"""derived tests: an ordered test the lab added by rule (a calculated test, a reflex) says which

Revision ID: 0011_derived_tests
Revises: 0010_judgement
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_derived_tests"
down_revision: str | tuple[str, ...] | None = "0010_judgement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ordered_test",
        sa.Column("added_by_rule", sa.String(length=120), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("ordered_test", "added_by_rule")
