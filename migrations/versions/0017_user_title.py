"""users: a title beside the full name (printed with "Godkjent av" on result reports)

Revision ID: 0017_user_title
Revises: 0016_loinc_aliases
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_user_title"
down_revision: str | tuple[str, ...] | None = "0016_loinc_aliases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lab_user",
        sa.Column("title", sa.String(100), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("lab_user", "title")
