"""dispatch bookkeeping and the sweeps table

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_backoff_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "sweeps",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_slot", sa.BigInteger(), nullable=False),
        sa.Column("interval_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("outcome IN ('running', 'ok', 'failed')", name=op.f("ck_sweeps_outcome")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("sweeps")
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at_ms")
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_column("last_backoff_ms")
        batch_op.drop_column("dispatched_at_ms")
