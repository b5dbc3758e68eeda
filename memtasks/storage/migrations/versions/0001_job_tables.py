"""job tables

Revision ID: 0001
Revises:
Create Date: 2026-11-22 19:26:49.724737
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decay_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("source_ids_json", sa.Text(), nullable=False),
        sa.Column("summary_method", sa.String(length=40), nullable=False),
        sa.Column("attestation_required", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("result_memory_id", sa.String(length=64), nullable=True),
        sa.Column("scheduled_for_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('candidate_compression', 'episode_compression', 'expired_principle_review')",
            name=op.f("ck_decay_jobs_kind"),
        ),
        sa.CheckConstraint(
            "state <> 'failed' OR (state_reason IS NOT NULL AND length(trim(state_reason)) > 0)",
            name=op.f("ck_decay_jobs_failed_reason"),
        ),
        sa.CheckConstraint(
            "state <> 'in_progress' OR (lease_token IS NOT NULL AND locked_until_ms IS NOT NULL)",
            name=op.f("ck_decay_jobs_in_progress_lease"),
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'in_progress', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_decay_jobs_state"),
        ),
        sa.CheckConstraint(
            "summary_method IN ('deterministic_concatenate', 'llm_summary')",
            name=op.f("ck_decay_jobs_summary_method"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decay_jobs")),
    )
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_decay_jobs_lease",
            ["locked_until_ms"],
            unique=False,
            sqlite_where=sa.text("state = 'in_progress'"),
            postgresql_where=sa.text("state = 'in_progress'"),
        )
        batch_op.create_index(
            "ix_decay_jobs_pending",
            ["scheduled_for_ms"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index("ix_decay_jobs_state", ["state"], unique=False)

    op.create_table(
        "mem_tree_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("available_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failure_class", sa.String(length=16), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("completed_at_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "failure_class IS NULL OR failure_class IN ('transient', 'unrecoverable')",
            name=op.f("ck_mem_tree_jobs_failure_class"),
        ),
        sa.CheckConstraint(
            "status <> 'running' OR (lease_token IS NOT NULL AND locked_until_ms IS NOT NULL)",
            name=op.f("ck_mem_tree_jobs_running_lease"),
        ),
        sa.CheckConstraint(
            "status IN ('ready', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("ck_mem_tree_jobs_status"),
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name=op.f("ck_mem_tree_jobs_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mem_tree_jobs")),
    )
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_mem_tree_jobs_completed_at_ms", ["completed_at_ms"], unique=False)
        batch_op.create_index("ix_mem_tree_jobs_kind", ["kind"], unique=False)
        batch_op.create_index(
            "ix_mem_tree_jobs_lease",
            ["locked_until_ms"],
            unique=False,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.create_index(
            "ix_mem_tree_jobs_ready",
            ["priority", "available_at_ms"],
            unique=False,
            sqlite_where=sa.text("status = 'ready'"),
            postgresql_where=sa.text("status = 'ready'"),
        )
        batch_op.create_index(
            "ix_mem_tree_jobs_status_available_at_ms", ["status", "available_at_ms"], unique=False
        )
        batch_op.create_index(
            "uq_mem_tree_jobs_dedupe_active",
            ["dedupe_key"],
            unique=True,
            sqlite_where=sa.text("status IN ('ready', 'running')"),
            postgresql_where=sa.text("status IN ('ready', 'running')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_mem_tree_jobs_dedupe_active",
            sqlite_where=sa.text("status IN ('ready', 'running')"),
            postgresql_where=sa.text("status IN ('ready', 'running')"),
        )
        batch_op.drop_index("ix_mem_tree_jobs_status_available_at_ms")
        batch_op.drop_index(
            "ix_mem_tree_jobs_ready",
            sqlite_where=sa.text("status = 'ready'"),
            postgresql_where=sa.text("status = 'ready'"),
        )
        batch_op.drop_index(
            "ix_mem_tree_jobs_lease",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.drop_index("ix_mem_tree_jobs_kind")
        batch_op.drop_index("ix_mem_tree_jobs_completed_at_ms")

    op.drop_table("mem_tree_jobs")
    with op.batch_alter_table("decay_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_decay_jobs_state")
        batch_op.drop_index(
            "ix_decay_jobs_pending",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_index(
            "ix_decay_jobs_lease",
            sqlite_where=sa.text("state = 'in_progress'"),
            postgresql_where=sa.text("state = 'in_progress'"),
        )

    op.drop_table("decay_jobs")
