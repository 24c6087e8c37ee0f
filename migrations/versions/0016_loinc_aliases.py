"""catalog: alternative LOINC codes per test (accepted in orders, never sent)

Creatinine and glucose are reported in umol/L and mmol/L ([Moles/volume]: 14682-9, 14749-6);
some senders order them by the [Mass/volume] codes 2160-0 and 2345-7, which stay accepted.

Revision ID: 0016_loinc_aliases
Revises: 0015_rulesets
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_loinc_aliases"
down_revision: str | tuple[str, ...] | None = "0015_rulesets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lab_test",
        sa.Column(
            "loinc_aliases",
            sa.ARRAY(sa.String(20)),
            server_default="{}",
            nullable=False,
        ),
    )
    # A catalog seeded before this revision: the demo's creatinine and glucose move to their
    # moles/volume codes and keep the old ones as aliases (other tests are left as they are).
    op.execute(
        """
        UPDATE lab_test SET loinc = '14682-9', loinc_aliases = ARRAY['2160-0']
         WHERE code = 'KREA' AND loinc = '2160-0' AND unit = 'umol/L'
        """
    )
    op.execute(
        """
        UPDATE lab_test SET loinc = '14749-6', loinc_aliases = ARRAY['2345-7']
         WHERE code = 'GLUK' AND loinc = '2345-7' AND unit = 'mmol/L'
        """
    )


def downgrade() -> None:
    op.execute(
        "UPDATE lab_test SET loinc = loinc_aliases[1] "
        "WHERE code IN ('KREA', 'GLUK') AND cardinality(loinc_aliases) = 1"
    )
    op.drop_column("lab_test", "loinc_aliases")
