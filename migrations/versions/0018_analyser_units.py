"""analysers: a catalog unit's UCUM code; the whole message of an unmatched result

`lab_test.ucum` holds a test's unit in UCUM when the lab writes it otherwise (TSH: `mIU/L`
shown, `m[IU]/L` in UCUM). `unmatched_result.raw_message` keeps the whole ASTM message a result
that could not be stored came in, beside its own record.

Revision ID: 0018_analyser_units
Revises: 0017_user_title
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_analyser_units"
down_revision: str | tuple[str, ...] | None = "0017_user_title"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lab_test", sa.Column("ucum", sa.String(30), nullable=True))
    # A catalog seeded before this revision: the one demo unit that UCUM writes otherwise.
    op.execute("UPDATE lab_test SET ucum = 'm[IU]/L' WHERE unit = 'mIU/L' AND ucum IS NULL")
    op.add_column(
        "unmatched_result",
        sa.Column("raw_message", sa.Text(), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("unmatched_result", "raw_message")
    op.drop_column("lab_test", "ucum")
