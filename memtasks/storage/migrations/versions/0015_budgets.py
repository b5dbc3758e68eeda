"""LLM budgets: spend per scope and period, and the admitted jobs' reservations

``llm_spend`` holds what each scope (``fleet``, ``agent:<lane>``) spent in each period, how
many jobs it settled and the costliest one (the estimate for the next admissions);
``llm_reservations`` what each admitted, unsettled LLM-bound job is expected to cost, until it
settles or its reservation expires (``memtasks.domain.budgets``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 07:16:45.562431
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_reservations",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=160), nullable=False),
        sa.Column("period_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "scope", name=op.f("pk_llm_reservations")),
    )
    with op.batch_alter_table("llm_reservations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_llm_reservations_scope_period_start_ms", ["scope", "period_start_ms"], unique=False
        )

    op.create_table(
        "llm_spend",
        sa.Column("scope", sa.String(length=160), nullable=False),
        sa.Column("period_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("spent", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("jobs", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_job_cost", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period_start_ms", name=op.f("pk_llm_spend")),
    )


def downgrade() -> None:
    op.drop_table("llm_spend")
    with op.batch_alter_table("llm_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_llm_reservations_scope_period_start_ms")

    op.drop_table("llm_reservations")
