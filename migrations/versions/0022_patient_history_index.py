"""patient history index: a patient's results of a test, newest measured first

Replaces `ix_result_patient_test_observed` (patient, test, observed_at) with an index in the
order every history read asks for: patient, test, then the measured time (observed, else
recorded: a manual entry without a time counts from when it was typed) newest first, then the
result id. The cumulative view pages through it (keyset: one range scan per page, however long
the history), the review page's "previous" value and the delta check's previous result are its
first entry. One index replaces another of about the same width, so recording a result writes
no more index entries than before.

Revision ID: 0022_patient_history_index
Revises: 0021_reason_keys
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_patient_history_index"
down_revision: str | tuple[str, ...] | None = "0021_reason_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_result_patient_history",
        "result",
        [
            "patient_id",
            "test_id",
            sa.text("coalesce(observed_at, recorded_at) DESC"),
            sa.text("id DESC"),
        ],
    )
    op.drop_index("ix_result_patient_test_observed", table_name="result")


def downgrade() -> None:
    op.create_index(
        "ix_result_patient_test_observed", "result", ["patient_id", "test_id", "observed_at"]
    )
    op.drop_index("ix_result_patient_history", table_name="result")
