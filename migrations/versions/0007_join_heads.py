"""join the turnaround branch (0005) with the work-list branch (0006): one head again

Revision ID: 0007
Revises: 0005, 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | tuple[str, ...] | None = ("0005", "0006")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
