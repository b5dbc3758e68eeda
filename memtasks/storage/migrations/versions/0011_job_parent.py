"""which job enqueued a job

A follow-up a handler enqueues (an extract's append, an append's seal…) records the job that
enqueued it in ``parent_id``; a producer's job has none. A partial index holds only the
follow-ups, so a job's page lists them without a scan. Memory-tree jobs only: decay jobs are
never follow-ups.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

HAS_PARENT = "parent_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_mem_tree_jobs_parent_id",
            ["parent_id"],
            unique=False,
            sqlite_where=sa.text(HAS_PARENT),
            postgresql_where=sa.text(HAS_PARENT),
        )


def downgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_mem_tree_jobs_parent_id",
            sqlite_where=sa.text(HAS_PARENT),
            postgresql_where=sa.text(HAS_PARENT),
        )
        batch_op.drop_column("parent_id")
