"""embedding model of memory-tree chunks and summaries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("mem_tree_chunks", "mem_tree_summaries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("embedding_model", sa.String(length=128), nullable=True))
            batch_op.create_index(f"ix_{table}_embedding_model", ["embedding_model"], unique=False)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_embedding_model")
            batch_op.drop_column("embedding_model")
