"""the failed memory-tree jobs indexed

The web console counts the open work (ready, running, failed) without reading the finished
rows, and lists failed jobs newest first with filters on kind and failure class. Ready and
running rows have their partial indexes already; failed rows get one on ``id`` (ids are
time-ordered), which a row enters only when its job fails — the hot path writes it never.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FAILED = "status = 'failed'"


def upgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mem_tree_jobs_failed",
            ["id"],
            unique=False,
            sqlite_where=sa.text(FAILED),
            postgresql_where=sa.text(FAILED),
        )


def downgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_mem_tree_jobs_failed", sqlite_where=sa.text(FAILED), postgresql_where=sa.text(FAILED)
        )
