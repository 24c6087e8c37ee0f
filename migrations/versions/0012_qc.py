"""internal quality control: materials, lots, targets, runs, decisions, locks, the QC queue

Control results from analysers are kept in `qc_result` as before; these tables judge them
(Westgard rules), lock a test on an analyser when a run is rejected, and keep what could not be
judged in a queue (`qc_problem`). Patient-based QC settings live in `qc_moving_setting`.

Revision ID: 0012_qc
Revises: 0011_derived_tests
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_qc"
down_revision: str | tuple[str, ...] | None = "0011_derived_tests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "qc_material",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("manufacturer", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_material")),
        sa.UniqueConstraint("name", name=op.f("uq_qc_material_name")),
    )
    op.create_table(
        "qc_lock",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=8), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_event_kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_lock_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_lock")),
        sa.UniqueConstraint("instrument", "test_id", name=op.f("uq_qc_lock_instrument")),
    )
    op.create_table(
        "qc_lot",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("material_id", sa.BigInteger(), nullable=False),
        sa.Column("lot_number", sa.String(length=40), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["material_id"], ["qc_material.id"], name=op.f("fk_qc_lot_material_id_qc_material")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_lot")),
        sa.UniqueConstraint("material_id", "lot_number", name=op.f("uq_qc_lot_material_id")),
    )
    op.create_table(
        "qc_moving_setting",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("statistic", sa.String(length=8), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("truncation_low", sa.Numeric(), nullable=False),
        sa.Column("truncation_high", sa.Numeric(), nullable=False),
        sa.Column("target", sa.Numeric(), nullable=False),
        sa.Column("control_low", sa.Numeric(), nullable=False),
        sa.Column("control_high", sa.Numeric(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_moving_setting_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_moving_setting")),
        sa.UniqueConstraint("instrument", "test_id", name=op.f("uq_qc_moving_setting_instrument")),
    )
    op.create_table(
        "qc_override",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by_run_id", sa.BigInteger(), nullable=True),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_override_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_override")),
    )
    op.create_index(
        "ix_qc_override_test", "qc_override", ["instrument", "test_id", "at"], unique=False
    )
    op.create_table(
        "qc_policy",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("tea_percent", sa.Numeric(), nullable=True),
        sa.Column("bias_percent", sa.Numeric(), nullable=True),
        sa.Column("rules", sa.ARRAY(sa.String(length=8)), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_policy_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_policy")),
        sa.UniqueConstraint("instrument", "test_id", name=op.f("uq_qc_policy_instrument")),
    )
    op.create_table(
        "qc_run",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rules_applied", sa.ARRAY(sa.String(length=8)), nullable=False),
        sa.Column("first_rule", sa.String(length=8), nullable=False),
        sa.Column("all_levels", sa.Boolean(), nullable=False),
        sa.Column("entered_by", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column(
            "judged_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_run_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_run")),
        sa.UniqueConstraint("instrument", "test_id", "run_key", name=op.f("uq_qc_run_instrument")),
    )
    op.create_index(
        "ix_qc_run_history", "qc_run", ["instrument", "test_id", "run_at", "id"], unique=False
    )
    op.create_table(
        "qc_control_id",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("control_id", sa.String(length=80), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["qc_lot.id"], name=op.f("fk_qc_control_id_lot_id_qc_lot")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_control_id")),
        sa.UniqueConstraint("control_id", "instrument", name=op.f("uq_qc_control_id_control_id")),
    )
    op.create_table(
        "qc_point",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("unit", sa.String(length=30), nullable=False),
        sa.Column("mean", sa.Numeric(), nullable=True),
        sa.Column("sd", sa.Numeric(), nullable=True),
        sa.Column("z", sa.Float(), nullable=True),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("qc_result_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["lot_id"], ["qc_lot.id"], name=op.f("fk_qc_point_lot_id_qc_lot")),
        sa.ForeignKeyConstraint(
            ["qc_result_id"], ["qc_result.id"], name=op.f("fk_qc_point_qc_result_id_qc_result")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["qc_run.id"], name=op.f("fk_qc_point_run_id_qc_run")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_point")),
        sa.UniqueConstraint("qc_result_id", name=op.f("uq_qc_point_qc_result_id")),
        sa.UniqueConstraint("run_id", "level", name=op.f("uq_qc_point_run_id")),
    )
    op.create_index("ix_qc_point_chart", "qc_point", ["lot_id", "run_id"], unique=False)
    op.create_table(
        "qc_problem",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("qc_result_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("handled_by", sa.String(length=64), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["qc_result_id"], ["qc_result.id"], name=op.f("fk_qc_problem_qc_result_id_qc_result")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["qc_run.id"], name=op.f("fk_qc_problem_run_id_qc_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_problem")),
        sa.UniqueConstraint("qc_result_id", name=op.f("uq_qc_problem_qc_result_id")),
    )
    op.create_index("ix_qc_problem_status", "qc_problem", ["status", "id"], unique=False)
    op.create_table(
        "qc_target",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("lot_id", sa.BigInteger(), nullable=False),
        sa.Column("instrument", sa.String(length=64), nullable=False),
        sa.Column("test_id", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(length=30), nullable=False),
        sa.Column("mean", sa.Numeric(), nullable=True),
        sa.Column("sd", sa.Numeric(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column(
            "set_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["qc_lot.id"], name=op.f("fk_qc_target_lot_id_qc_lot")),
        sa.ForeignKeyConstraint(
            ["test_id"], ["lab_test.id"], name=op.f("fk_qc_target_test_id_lab_test")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_target")),
        sa.UniqueConstraint("lot_id", "instrument", "test_id", name=op.f("uq_qc_target_lot_id")),
    )
    op.create_table(
        "qc_violation",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=8), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.String(length=24), nullable=False),
        sa.Column("points", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["qc_run.id"], name=op.f("fk_qc_violation_run_id_qc_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qc_violation")),
    )
    op.create_index(op.f("ix_qc_violation_run_id"), "qc_violation", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_qc_violation_run_id"), table_name="qc_violation")
    op.drop_table("qc_violation")
    op.drop_table("qc_target")
    op.drop_index("ix_qc_problem_status", table_name="qc_problem")
    op.drop_table("qc_problem")
    op.drop_index("ix_qc_point_chart", table_name="qc_point")
    op.drop_table("qc_point")
    op.drop_table("qc_control_id")
    op.drop_index("ix_qc_run_history", table_name="qc_run")
    op.drop_table("qc_run")
    op.drop_table("qc_policy")
    op.drop_index("ix_qc_override_test", table_name="qc_override")
    op.drop_table("qc_override")
    op.drop_table("qc_moving_setting")
    op.drop_table("qc_lot")
    op.drop_table("qc_lock")
    op.drop_table("qc_material")
