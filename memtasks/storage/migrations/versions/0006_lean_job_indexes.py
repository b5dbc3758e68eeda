"""lean job indexes

Every insert, claim and settle writes each index of ``mem_tree_jobs`` whose predicate its
row matches. Two indexes no hot-path query uses go (``kind``; ``status, available_at_ms``,
which the partial ready index serves); the dedupe and completion indexes become partial, so
a row without a dedupe key, or not finished, is in neither. An insert now writes the primary
key and the ready index; a claim the primary key and the lease index; a settle the primary
key and the completion index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('ready', 'running')"
DEDUPED = "dedupe_key IS NOT NULL AND status IN ('ready', 'running')"
FINISHED = "completed_at_ms IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_mem_tree_jobs_kind")
        batch_op.drop_index("ix_mem_tree_jobs_status_available_at_ms")
        batch_op.drop_index("ix_mem_tree_jobs_completed_at_ms")
        batch_op.drop_index(
            "uq_mem_tree_jobs_dedupe_active", sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE)
        )
        batch_op.create_index(
            "ix_mem_tree_jobs_finished",
            ["completed_at_ms"],
            unique=False,
            sqlite_where=sa.text(FINISHED),
            postgresql_where=sa.text(FINISHED),
        )
        batch_op.create_index(
            "uq_mem_tree_jobs_dedupe_active",
            ["dedupe_key"],
            unique=True,
            sqlite_where=sa.text(DEDUPED),
            postgresql_where=sa.text(DEDUPED),
        )


def downgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_mem_tree_jobs_dedupe_active", sqlite_where=sa.text(DEDUPED), postgresql_where=sa.text(DEDUPED)
        )
        batch_op.drop_index(
            "ix_mem_tree_jobs_finished", sqlite_where=sa.text(FINISHED), postgresql_where=sa.text(FINISHED)
        )
        batch_op.create_index(
            "uq_mem_tree_jobs_dedupe_active",
            ["dedupe_key"],
            unique=True,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )
        batch_op.create_index("ix_mem_tree_jobs_completed_at_ms", ["completed_at_ms"], unique=False)
        batch_op.create_index(
            "ix_mem_tree_jobs_status_available_at_ms", ["status", "available_at_ms"], unique=False
        )
        batch_op.create_index("ix_mem_tree_jobs_kind", ["kind"], unique=False)
