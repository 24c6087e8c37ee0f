"""hl7_message.claimed_by: which dispatcher holds an outbound message that is `sent`, so that a
dispatcher that is gone is known at once

Each dispatcher takes a number from `hl7_claimant_seq` and holds a session-level advisory lock
on it for as long as it runs (`Claimant` in lab/hl7/dispatcher.py); the messages it claims
carry that number. A `sent` message whose number no session holds belongs to a dispatcher that
is gone, and is claimed again at once. Rows claimed before this column (NULL) keep the old
rule: claimed again after `stale_after`.

Revision ID: 0026_outbox_claimant
Revises: 0025_seal_floor
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_outbox_claimant"
down_revision: str | tuple[str, ...] | None = "0025_seal_floor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hl7_message", sa.Column("claimed_by", sa.Integer(), nullable=True))
    # Numbers for advisory lock keys (int4): never given twice before the sequence wraps.
    op.execute("CREATE SEQUENCE hl7_claimant_seq AS integer MINVALUE 1 CYCLE")
    op.execute("GRANT USAGE, SELECT ON SEQUENCE hl7_claimant_seq TO lab_runtime")


def downgrade() -> None:
    op.execute("DROP SEQUENCE hl7_claimant_seq")
    op.drop_column("hl7_message", "claimed_by")
