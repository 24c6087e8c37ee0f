"""ordered tests: a tube never received is due its turnaround target from the order time

Until now a test had a due time only once its tube was received, so a tube never received fell
off the overdue list. New orders get one when they are placed (`specimens.service`); this gives
it to the open tests of tubes not received yet.

Revision ID: 0023_due_from_order
Revises: 0022_patient_history_index
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_due_from_order"
down_revision: str | tuple[str, ...] | None = "0022_patient_history_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE ordered_test o
        SET due_at = o.requested_at + make_interval(mins => t.turnaround_minutes)
        FROM lab_test t, specimen s
        WHERE t.id = o.test_id AND s.id = o.specimen_id
          AND o.due_at IS NULL AND o.status IN ('ordered', 'in_progress')
          AND s.received_at IS NULL AND t.turnaround_minutes IS NOT NULL
        """
    )


def downgrade() -> None:
    pass  # a due time more is harmless to the code before this revision
