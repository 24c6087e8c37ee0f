"""catalog version: a counter bumped by every catalog change, so caches know when to reload

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE catalog_version_seq")


def downgrade() -> None:
    op.execute("DROP SEQUENCE IF EXISTS catalog_version_seq")
