"""who holds a job, and what each attempt did

A claim records the worker that holds the job (``claimed_by``: host and process id), and
each attempt's end — done, retry, failed, deferred, released, or its lease expired and
recovered — is appended to ``attempt_history`` (a JSON array, the last 20 attempts), so a
job taken over from a lost worker shows it afterwards. Both job tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("mem_tree_jobs", "decay_jobs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
            batch_op.add_column(sa.Column("attempt_history", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("attempt_history")
            batch_op.drop_column("claimed_by")
