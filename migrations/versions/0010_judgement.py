"""judgement: every result keeps why it waits (holds) and the rule set version that judged it

`result.holds` and `result.ruleset_version` are the current state for the queues and the API;
each version keeps its own, with the rest of the judgement the reviewer is shown (`judgement`:
the delta with its limit, implausible, critical, rerun, coded comments). Results stored before
have no holds and no rule set version (nothing judged them).

Revision ID: 0010_judgement
Revises: 0009_measurements
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_judgement"
down_revision: str | tuple[str, ...] | None = "0009_measurements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("result", "result_version"):
        op.add_column(
            table,
            sa.Column(
                "holds",
                postgresql.JSONB(astext_type=sa.Text()),
                server_default=sa.text("'[]'::jsonb"),
                nullable=False,
            ),
        )
        op.add_column(table, sa.Column("ruleset_version", sa.Integer(), nullable=True))
    op.add_column(
        "result_version",
        sa.Column("judgement", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("result_version", "judgement")
    for table in ("result", "result_version"):
        op.drop_column(table, "ruleset_version")
        op.drop_column(table, "holds")
