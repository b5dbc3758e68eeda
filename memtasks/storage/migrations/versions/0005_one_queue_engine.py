"""one queue engine for both job tables

Both job tables now run on one leased-queue engine, so decay_jobs gains the columns the
engine keeps (named as in mem_tree_jobs) and mem_tree_jobs gains ``updated_at_ms``. Every
existing row keeps its meaning:

- decay_jobs.priority from the kind (episode compression 5, the rest 4: ``DecayKind.priority``);
- a failed decay job failed for good under the old rules (no retries existed): its
  failure_class is ``unrecoverable``, so the self-heal sweep leaves it where it is;
- started/completed times from ``updated_at_ms`` where the state says what it was;
- mem_tree_jobs.updated_at_ms from the latest time the row already records.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("updated_at_ms", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.execute(
        "UPDATE mem_tree_jobs SET updated_at_ms ="
        " COALESCE(completed_at_ms, heartbeat_at_ms, started_at_ms, created_at_ms)"
    )

    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default=sa.text("4"), nullable=False)
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failure_class", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("last_backoff_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("started_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("completed_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("attestation_json", sa.Text(), nullable=True))
    op.execute("UPDATE decay_jobs SET priority = 5 WHERE kind = 'episode_compression'")
    op.execute("UPDATE decay_jobs SET failure_class = 'unrecoverable' WHERE state = 'failed'")
    op.execute("UPDATE decay_jobs SET started_at_ms = updated_at_ms WHERE state = 'in_progress'")
    op.execute(
        "UPDATE decay_jobs SET completed_at_ms = updated_at_ms"
        " WHERE state IN ('completed', 'failed', 'cancelled')"
    )
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f("ck_decay_jobs_failure_class"),
            "failure_class IS NULL OR failure_class IN ('transient', 'unrecoverable')",
        )
        batch_op.create_check_constraint(
            op.f("ck_decay_jobs_attempts"), "attempts >= 0 AND max_attempts >= 1"
        )
        batch_op.drop_index(
            "ix_decay_jobs_pending",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index(
            "ix_decay_jobs_ready",
            ["priority", "scheduled_for_ms"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index("ix_decay_jobs_completed_at_ms", ["completed_at_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_decay_jobs_completed_at_ms")
        batch_op.drop_index(
            "ix_decay_jobs_ready",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index(
            "ix_decay_jobs_pending",
            ["scheduled_for_ms"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_constraint(op.f("ck_decay_jobs_attempts"), type_="check")
        batch_op.drop_constraint(op.f("ck_decay_jobs_failure_class"), type_="check")
        for column in (
            "attestation_json",
            "heartbeat_at_ms",
            "completed_at_ms",
            "started_at_ms",
            "last_backoff_ms",
            "failure_class",
            "last_error",
            "priority",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_column("updated_at_ms")
