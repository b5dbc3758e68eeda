"""what operators did to jobs by hand

The web console's retry, cancel and bulk requeue are recorded in ``operator_actions``: when
(the database's clock), who (the authenticated user, or the client address without
authentication), through what (``web``), the action, its target (a job id, or the filter of a
bulk requeue as JSON) and how many rows it changed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("affected", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
    )
    op.create_index(op.f("ix_operator_actions_at_ms"), "operator_actions", ["at_ms"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_actions_at_ms"), table_name="operator_actions")
    op.drop_table("operator_actions")
