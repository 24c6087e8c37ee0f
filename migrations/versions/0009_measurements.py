"""measurements: a test may have several (a rerun, a dilution, a repeat on another analyser)

Each measurement is kept with its origin; each version of a result names the one it reports.
The results stored so far get their measurements from their versions: the first version, and
every later one made by a rerun; each version is told which one it reports. The analyser's
flags on a version may be as long as the unmatched queue keeps them (200).

Revision ID: 0009_measurements
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_measurements"
down_revision: str | tuple[str, ...] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measurement",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("specimen_id", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("preliminary", sa.Boolean(), nullable=False),
        sa.Column("value_numeric", sa.Numeric(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("comparator", sa.String(length=2), nullable=True),
        sa.Column("unit", sa.String(length=30), nullable=True),
        sa.Column("original_value", sa.Text(), nullable=False),
        sa.Column("original_unit", sa.String(length=40), nullable=False),
        sa.Column("dilution", sa.String(length=20), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("instrument_flags", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("after_release", sa.Boolean(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"], ["result.id"], name=op.f("fk_measurement_result_id_result")
        ),
        sa.ForeignKeyConstraint(
            ["specimen_id"], ["specimen.id"], name=op.f("fk_measurement_specimen_id_specimen")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurement")),
        sa.UniqueConstraint("result_id", "number", name=op.f("uq_measurement_result_id")),
    )
    op.create_index(
        "ix_measurement_waiting",
        "measurement",
        ["recorded_at"],
        postgresql_where=sa.text("after_release AND reviewed_at IS NULL"),
    )
    op.add_column("result_version", sa.Column("measurement_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_result_version_measurement_id_measurement"),
        "result_version",
        "measurement",
        ["measurement_id"],
        ["id"],
    )
    # result_version is append-only (a trigger refuses UPDATE): widening a column is DDL, allowed.
    op.alter_column(
        "result_version",
        "instrument_flags",
        type_=sa.String(length=200),
        existing_type=sa.String(length=64),
        existing_nullable=False,
    )
    op.execute(
        """
        INSERT INTO measurement (result_id, number, specimen_id, origin, preliminary,
            value_numeric, value_text, comparator, unit, original_value, original_unit, dilution,
            instrument, operator, instrument_flags, comment, observed_at, recorded_at,
            recorded_by, after_release)
        SELECT v.result_id,
               row_number() OVER (PARTITION BY v.result_id ORDER BY v.version),
               r.specimen_id,
               CASE WHEN v.version = 1 THEN 'first' ELSE 'rerun' END,
               v.status = 'preliminary',
               v.value_numeric, v.value_text, v.comparator, v.unit, '', '', '',
               v.instrument, v.operator, v.instrument_flags, v.comment, v.observed_at,
               v.created_at, v.author, false
        FROM result_version v JOIN result r ON r.id = v.result_id
        WHERE v.version = 1 OR v.reason = 'rerun'
        """
    )

    # Each stored version names the measurement it reports: the newest measured by then. The
    # versions are append-only; this one-time fill is the only change they ever get.
    op.execute("ALTER TABLE result_version DISABLE TRIGGER result_version_append_only")
    op.execute(
        """
        WITH numbered AS (
            SELECT id, result_id,
                   sum(CASE WHEN version = 1 OR reason = 'rerun' THEN 1 ELSE 0 END)
                       OVER (PARTITION BY result_id ORDER BY version) AS number
            FROM result_version)
        UPDATE result_version v SET measurement_id = m.id
        FROM numbered JOIN measurement m
             ON m.result_id = numbered.result_id AND m.number = numbered.number
        WHERE v.id = numbered.id
        """
    )
    op.execute("ALTER TABLE result_version ENABLE TRIGGER result_version_append_only")


def downgrade() -> None:
    op.alter_column(
        "result_version",
        "instrument_flags",
        type_=sa.String(length=64),
        existing_type=sa.String(length=200),
        existing_nullable=False,
        postgresql_using="left(instrument_flags, 64)",
    )
    op.drop_constraint(
        op.f("fk_result_version_measurement_id_measurement"), "result_version", type_="foreignkey"
    )
    op.drop_column("result_version", "measurement_id")
    op.drop_table("measurement")
