"""fair share across agents: each job's lane and its place in it

A job now belongs to a lane (``fair_key``: its agent or tenant; ``''`` for the shared lane)
and holds its place in that lane (``fair_seq``, virtual milliseconds: the lane's jobs spaced
one second apart, none before it is due). A claim takes ready rows by ``(priority,
fair_seq)``, so within a priority the lanes take turns. The ready index follows that order,
and a second partial index finds where each lane ends. Rows waiting now keep their order:
their place is their due time. The archive tables keep the two columns like the rest.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 07:03:09.241144
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

READY = "status = 'ready'"
PENDING = "state = 'pending'"
# The rows waiting now keep their order (oldest due first) in the shared lane.
KEEP_ORDER = {
    "mem_tree_jobs": "UPDATE mem_tree_jobs SET fair_seq = available_at_ms WHERE status = 'ready'",
    "decay_jobs": "UPDATE decay_jobs SET fair_seq = scheduled_for_ms WHERE state = 'pending'",
}


def _lane_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("fair_key", sa.String(length=128), server_default=sa.text("''"), nullable=False),
        sa.Column("fair_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    ]


def upgrade() -> None:
    for archive in ("archived_decay_jobs", "archived_mem_tree_jobs"):
        with op.batch_alter_table(archive, schema=None) as batch_op:
            for column in _lane_columns():
                batch_op.add_column(column)
    for table, where in (("mem_tree_jobs", READY), ("decay_jobs", PENDING)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _lane_columns():
                batch_op.add_column(column)
            batch_op.drop_index(f"ix_{table}_ready", sqlite_where=sa.text(where))
        op.execute(sa.text(KEEP_ORDER[table]))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(
                f"ix_{table}_ready",
                ["priority", "fair_seq"],
                unique=False,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )
            batch_op.create_index(
                f"ix_{table}_lane",
                ["fair_key", "fair_seq"],
                unique=False,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )


def downgrade() -> None:
    for table, due, where in (
        ("mem_tree_jobs", "available_at_ms", READY),
        ("decay_jobs", "scheduled_for_ms", PENDING),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(
                f"ix_{table}_lane", sqlite_where=sa.text(where), postgresql_where=sa.text(where)
            )
            batch_op.drop_index(
                f"ix_{table}_ready", sqlite_where=sa.text(where), postgresql_where=sa.text(where)
            )
            batch_op.create_index(
                f"ix_{table}_ready",
                ["priority", due],
                unique=False,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )
            batch_op.drop_column("fair_seq")
            batch_op.drop_column("fair_key")
    for archive in ("archived_mem_tree_jobs", "archived_decay_jobs"):
        with op.batch_alter_table(archive, schema=None) as batch_op:
            batch_op.drop_column("fair_seq")
            batch_op.drop_column("fair_key")
