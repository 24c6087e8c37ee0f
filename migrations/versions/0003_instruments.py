"""instruments: unmatched results, QC results, order downloads

Revision ID: 0003
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qc_result",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("control_id", sa.String(length=80), nullable=False),
        sa.Column("instrument_test_code", sa.String(length=80), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("instrument_flags", sa.String(length=200), nullable=False),
        sa.Column("result_status", sa.String(length=4), nullable=False),
        sa.Column("operator", sa.String(length=80), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw_record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_result")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_qc_result_fingerprint")),
    )
    op.create_index(
        "ix_qc_result_instrument_observed", "qc_result", ["instrument", "observed_at"], unique=False
    )
    op.create_table(
        "order_download",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("specimen_id", sa.BigInteger(), nullable=False),
        sa.Column("accession_number", sa.String(length=20), nullable=False),
        sa.Column("test_codes", sa.ARRAY(sa.String(length=80)), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["specimen_id"], ["specimen.id"], name=op.f("fk_order_download_specimen_id_specimen")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_download")),
        sa.UniqueConstraint("instrument", "specimen_id", name=op.f("uq_order_download_instrument")),
    )
    op.create_table(
        "unmatched_result",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("specimen_id", sa.String(length=80), nullable=False),
        sa.Column("instrument_test_code", sa.String(length=80), nullable=False),
        sa.Column("test_code", sa.String(length=20), nullable=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=False),
        sa.Column("instrument_flags", sa.String(length=200), nullable=False),
        sa.Column("result_status", sa.String(length=4), nullable=False),
        sa.Column("operator", sa.String(length=80), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_record", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_by", sa.String(length=64), nullable=True),
        sa.Column("handling_note", sa.Text(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"], ["result.id"], name=op.f("fk_unmatched_result_result_id_result")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unmatched_result")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_unmatched_result_fingerprint")),
    )
    op.create_index(
        "ix_unmatched_result_status_received",
        "unmatched_result",
        ["status", "received_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_unmatched_result_status_received", table_name="unmatched_result")
    op.drop_table("unmatched_result")
    op.drop_table("order_download")
    op.drop_index("ix_qc_result_instrument_observed", table_name="qc_result")
    op.drop_table("qc_result")
