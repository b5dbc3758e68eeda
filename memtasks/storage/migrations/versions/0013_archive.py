"""the archive of what the prunes took

Consolidation and the finished-job prune move the rows they remove into these tables (the
source's columns as they were, when the row was archived and, for consolidation, the ledger
id of the run, which keys the row with its id), where they stay for the grace period
(``MEMTASKS_ARCHIVE_GRACE_DAYS``) before the ``purge_archive`` sweep deletes them. An operator
restores from them with ``memtasks archive restore``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 06:30:57.222129
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archived_decay_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("source_ids_json", sa.Text(), nullable=False),
        sa.Column("summary_method", sa.String(length=40), nullable=False),
        sa.Column("attestation_required", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("result_memory_id", sa.String(length=64), nullable=True),
        sa.Column("scheduled_for_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("dispatched_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failure_class", sa.String(length=16), nullable=True),
        sa.Column("last_backoff_ms", sa.BigInteger(), nullable=True),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("completed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("attestation_json", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("attempt_history", sa.Text(), nullable=True),
        sa.Column("archived_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archived_decay_jobs")),
    )
    with op.batch_alter_table("archived_decay_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_archived_decay_jobs_archived_at_ms", ["archived_at_ms"], unique=False)

    op.create_table(
        "archived_mem_tree_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
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
        sa.Column("dispatched_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_backoff_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("attempt_history", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("archived_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archived_mem_tree_jobs")),
    )
    with op.batch_alter_table("archived_mem_tree_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_archived_mem_tree_jobs_archived_at_ms", ["archived_at_ms"], unique=False)

    op.create_table(
        "archived_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("archived_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "id", name=op.f("pk_archived_messages")),
    )
    with op.batch_alter_table("archived_messages", schema=None) as batch_op:
        batch_op.create_index("ix_archived_messages_archived_at_ms", ["archived_at_ms"], unique=False)
        batch_op.create_index("ix_archived_messages_conversation_id", ["conversation_id"], unique=False)

    op.create_table(
        "archived_outcomes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("domain", sa.String(length=128), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("lesson", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("archived_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "id", name=op.f("pk_archived_outcomes")),
    )
    with op.batch_alter_table("archived_outcomes", schema=None) as batch_op:
        batch_op.create_index("ix_archived_outcomes_archived_at_ms", ["archived_at_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("archived_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_outcomes_archived_at_ms")

    op.drop_table("archived_outcomes")
    with op.batch_alter_table("archived_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_messages_conversation_id")
        batch_op.drop_index("ix_archived_messages_archived_at_ms")

    op.drop_table("archived_messages")
    with op.batch_alter_table("archived_mem_tree_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_mem_tree_jobs_archived_at_ms")

    op.drop_table("archived_mem_tree_jobs")
    with op.batch_alter_table("archived_decay_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_archived_decay_jobs_archived_at_ms")

    op.drop_table("archived_decay_jobs")
