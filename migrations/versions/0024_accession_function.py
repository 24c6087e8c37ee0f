"""accession_number(year, sequence): the accession number in SQL, so a new order's INSERT can
number its tubes itself

The same number as `lab.specimens.accession.make` (two digits of the year, seven of the
sequence, Damm's check digit); tests/specimens/test_accession.py checks the two agree.

Revision ID: 0024_accession_function
Revises: 0023_due_from_order
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_accession_function"
down_revision: str | tuple[str, ...] | None = "0023_due_from_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Damm's quasigroup of order 10 (lab.specimens.accession._DAMM), rows 1-based in SQL.
_DAMM = (
    "{{0,3,1,7,5,9,8,6,4,2},{7,0,9,2,1,5,4,8,6,3},{4,2,0,6,8,7,1,3,5,9},"
    "{1,7,5,0,9,8,3,4,2,6},{6,1,2,3,0,4,5,9,7,8},{3,6,7,4,2,0,9,5,8,1},"
    "{5,8,6,9,7,2,0,1,3,4},{8,9,4,5,3,6,2,0,1,7},{9,4,3,8,6,1,7,2,0,5},"
    "{2,5,8,1,4,3,6,7,9,0}}"
)


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION accession_number(year integer, sequence bigint) RETURNS varchar
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        DECLARE
            body text := lpad((year % 100)::text, 2, '0')
                || lpad((sequence % 10000000)::text, 7, '0');
            damm constant smallint[] := '{_DAMM}';
            interim smallint := 0;
        BEGIN
            FOR position IN 1..length(body) LOOP
                interim := damm[interim + 1][substr(body, position, 1)::integer + 1];
            END LOOP;
            RETURN body || interim::text;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION accession_number(integer, bigint)")
