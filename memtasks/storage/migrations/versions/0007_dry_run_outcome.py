"""dry runs recorded as dry runs

A dry run counts what a consolidation would delete and deletes nothing, yet it was stored
with outcome ``ran``, so it passed for the last consolidation. The ledger gets a fourth
outcome, ``dry_run``, and the dry runs already stored (``dry_run`` set, outcome ``ran``)
take it. A downgrade turns them back into ``ran`` rows with ``dry_run`` set, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD = "outcome IN ('ran', 'skipped', 'failed')"
NEW = "outcome IN ('ran', 'skipped', 'failed', 'dry_run')"

runs = sa.table("consolidation_runs", sa.column("dry_run", sa.Boolean()), sa.column("outcome", sa.String()))


def upgrade() -> None:
    with op.batch_alter_table("consolidation_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_consolidation_runs_outcome"), type_="check")
        batch_op.create_check_constraint(op.f("ck_consolidation_runs_outcome"), NEW)
    op.execute(
        runs.update().where(runs.c.dry_run == sa.true(), runs.c.outcome == "ran").values(outcome="dry_run")
    )


def downgrade() -> None:
    op.execute(runs.update().where(runs.c.outcome == "dry_run").values(outcome="ran", dry_run=True))
    with op.batch_alter_table("consolidation_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_consolidation_runs_outcome"), type_="check")
        batch_op.create_check_constraint(op.f("ck_consolidation_runs_outcome"), OLD)
