"""The audit sealer reads only what it may seal: audit_seal.sealed_below and a BRIN index on
audit_event.xact

Each round of the sealer (lab/audit_chain.py) anti-joined every audit row with every seal to
find the unsealed ones: its cost grew with the whole trail. A round that seals every row below
its horizon now notes that horizon on its seals, and the next round reads only the rows of
transactions from there on, through a BRIN index on `xact` (the transaction ids grow with the
table's pages; a BRIN index costs next to nothing to keep up on an append-only table).

Revision ID: 0025_seal_floor
Revises: 0024_accession_function
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_seal_floor"
down_revision: str | tuple[str, ...] | None = "0024_accession_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_seal", sa.Column("sealed_below", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_audit_event_xact", "audit_event", ["xact"], unique=False, postgresql_using="brin"
    )


def downgrade() -> None:
    op.drop_index("ix_audit_event_xact", table_name="audit_event", postgresql_using="brin")
    op.drop_column("audit_seal", "sealed_below")
