"""work lists: a tube's urgency and a test's due time, so the lists read from indexes

The overview, the worklists and the overdue list sort open work by priority and time. The
order's priority is copied onto each tube (`specimen.urgency`: 0 stat, 1 urgent, 2 routine) and
each test gets the time its result is due (`ordered_test.due_at`: receipt + the test's
turnaround target), so each list is a short range scan of a partial index instead of a sort of
every open test. The catalog's version moves from a sequence (whose next value other sessions
see before the change commits) to a one-row table that changes with the transaction.
This revision also joins the feature branches 0002, 0003 and 0004.

Revision ID: 0006
Revises: 0002, 0003, 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | tuple[str, ...] | None = ("0002", "0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_YET_IN_LAB = "status IN ('expected', 'collected')"
IN_LAB = "status IN ('received', 'in_progress')"
OPEN_TESTS = "status IN ('ordered', 'in_progress', 'resulted') AND due_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalog_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, 1)")
    op.execute("DROP SEQUENCE IF EXISTS catalog_version_seq")
    op.add_column(
        "specimen",
        sa.Column("urgency", sa.SmallInteger(), server_default=sa.text("2"), nullable=False),
    )
    op.add_column("ordered_test", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """
        UPDATE specimen SET urgency = CASE lab_order.priority
            WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END
        FROM lab_order WHERE lab_order.id = specimen.order_id AND lab_order.priority <> 'routine'
        """
    )
    op.execute(
        """
        UPDATE ordered_test SET due_at = specimen.received_at
            + make_interval(mins => lab_test.turnaround_minutes)
        FROM specimen, lab_test
        WHERE specimen.id = ordered_test.specimen_id AND lab_test.id = ordered_test.test_id
          AND specimen.received_at IS NOT NULL AND lab_test.turnaround_minutes IS NOT NULL
          AND ordered_test.status IN ('ordered', 'in_progress', 'resulted')
        """
    )
    op.create_index(
        "ix_specimen_awaiting_receipt",
        "specimen",
        ["urgency", "created_at", "id"],
        postgresql_where=sa.text(NOT_YET_IN_LAB),
    )
    op.create_index(
        "ix_specimen_in_lab",
        "specimen",
        ["container", "urgency", "received_at", "id"],
        postgresql_where=sa.text(IN_LAB),
    )
    op.create_index(
        "ix_specimen_in_lab_all_benches",
        "specimen",
        ["urgency", "received_at", "id"],
        postgresql_where=sa.text(IN_LAB),
    )
    op.create_index(
        "ix_ordered_test_due", "ordered_test", ["due_at"], postgresql_where=sa.text(OPEN_TESTS)
    )


def downgrade() -> None:
    op.drop_index("ix_ordered_test_due", table_name="ordered_test")
    op.drop_index("ix_specimen_in_lab_all_benches", table_name="specimen")
    op.drop_index("ix_specimen_in_lab", table_name="specimen")
    op.drop_index("ix_specimen_awaiting_receipt", table_name="specimen")
    op.drop_column("ordered_test", "due_at")
    op.drop_column("specimen", "urgency")
    op.drop_table("catalog_version")
    op.execute("CREATE SEQUENCE catalog_version_seq")
