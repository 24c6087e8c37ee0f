"""trust: a runtime role that cannot erase history, a sealed audit chain, token expiry

The database user that runs the migrations owns the tables. The service itself runs as the
role `lab_runtime` (created here when missing; in production a DBA may create it first, with a
password), which may read and change the working tables but only INSERT and SELECT the history:
`audit_event`, `result_version`, `specimen_event` and `audit_seal`. It owns nothing, so it
cannot drop a trigger, and it has no TRUNCATE; a TRUNCATE trigger refuses it for the owner too.

`audit_seal` chains the audit rows: each seal holds SHA-256(previous seal's hash + the audit
row's content), written by the sealing job in the order rows become safely committed (see
lab/audit_chain.py); `lab audit verify` recomputes the chain, so a changed, removed or
re-ordered row (possible only for the owner or a superuser) is found. `audit_event.xact` is the
inserting transaction's id, which tells the sealer when a row can no longer be joined by an
earlier one still in flight. `audit_event.via` names the credential or connection used.

Revision ID: 0013_trust
Revises: 0012_qc
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# ruff: noqa: S608  (the SQL here is built from this file's own constants only)

revision: str = "0013_trust"
down_revision: str | tuple[str, ...] | None = "0012_qc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNTIME_ROLE = "lab_runtime"
HISTORY = ("audit_event", "result_version", "specimen_event", "audit_seal")


def upgrade() -> None:
    op.add_column(
        "audit_event", sa.Column("via", sa.String(200), server_default="", nullable=False)
    )
    op.add_column(
        "audit_event",
        sa.Column(
            "xact",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id()::text)::bigint"),
            nullable=False,
        ),
    )
    op.create_table(
        "audit_seal",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("audit_id", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column(
            "sealed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_seal")),
        sa.UniqueConstraint("audit_id", name=op.f("uq_audit_seal_audit_id")),
    )
    op.add_column("api_token", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("api_token", sa.Column("revoked_by", sa.String(64)))

    op.execute(
        "CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal "
        "FOR EACH ROW EXECUTE FUNCTION refuse_change()"
    )
    for table in HISTORY:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"
        )

    # The runtime role: created if missing (needs CREATEROLE; several test runs may race).
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN
                CREATE ROLE {RUNTIME_ROLE} LOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {RUNTIME_ROLE}")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {RUNTIME_ROLE}"
    )
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {RUNTIME_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {RUNTIME_ROLE}")
    for table in HISTORY:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {RUNTIME_ROLE}")
    # Tables of later migrations (made by the same owner) are granted the same way; a later
    # history table must REVOKE UPDATE, DELETE as above.
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {RUNTIME_ROLE}"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {RUNTIME_ROLE}"
    )


def downgrade() -> None:
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE USAGE, SELECT ON SEQUENCES FROM {RUNTIME_ROLE}"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {RUNTIME_ROLE}"
    )
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {RUNTIME_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {RUNTIME_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {RUNTIME_ROLE}")
    # The role itself stays: other databases of the cluster may use it.
    for table in HISTORY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP TRIGGER IF EXISTS audit_seal_append_only ON audit_seal")
    op.drop_column("api_token", "revoked_by")
    op.drop_column("api_token", "expires_at")
    op.drop_table("audit_seal")
    op.drop_column("audit_event", "xact")
    op.drop_column("audit_event", "via")
