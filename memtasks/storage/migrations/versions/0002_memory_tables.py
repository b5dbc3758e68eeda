"""memory tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 19:42:15.654203
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consolidation_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("gates_json", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("messages_pruned", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("outcomes_pruned", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('ran', 'skipped', 'failed')", name=op.f("ck_consolidation_runs_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consolidation_runs")),
    )
    with op.batch_alter_table("consolidation_runs", schema=None) as batch_op:
        batch_op.create_index("ix_consolidation_runs_started_at_ms", ["started_at_ms"], unique=False)

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=128), server_default=sa.text("('')"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'active'"), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_activity_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'closed')", name=op.f("ck_conversations_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_started_at_ms", ["started_at_ms"], unique=False)
        batch_op.create_index(
            "ix_conversations_status_updated_at_ms", ["status", "updated_at_ms"], unique=False
        )

    op.create_table(
        "episodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("authority", sa.String(length=32), nullable=False),
        sa.Column("domains_json", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("provenance_json", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_episodes_confidence")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
    )
    op.create_table(
        "facts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facts")),
        sa.UniqueConstraint("sender_id", "key", name=op.f("uq_facts_sender_id_key")),
    )
    op.create_table(
        "mem_tree_buffer_items",
        sa.Column("tree_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("added_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_id", "item_id", name=op.f("pk_mem_tree_buffer_items")),
    )
    with op.batch_alter_table("mem_tree_buffer_items", schema=None) as batch_op:
        batch_op.create_index("ix_mem_tree_buffer_items_tree_id_level", ["tree_id", "level"], unique=False)

    op.create_table(
        "mem_tree_buffers",
        sa.Column("tree_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("opened_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("level >= 0", name=op.f("ck_mem_tree_buffers_level")),
        sa.PrimaryKeyConstraint("tree_id", "level", name=op.f("pk_mem_tree_buffers")),
    )
    with op.batch_alter_table("mem_tree_buffers", schema=None) as batch_op:
        batch_op.create_index("ix_mem_tree_buffers_opened_at_ms", ["opened_at_ms"], unique=False)

    op.create_table(
        "mem_tree_chunks",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tree_id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("doc_id", sa.String(length=128), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("entities_json", sa.Text(), nullable=True),
        sa.Column("keywords_json", sa.Text(), nullable=True),
        sa.Column("extracted_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("embedding_json", sa.Text(), nullable=True),
        sa.Column("summary_id", sa.String(length=64), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mem_tree_chunks")),
    )
    with op.batch_alter_table("mem_tree_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_mem_tree_chunks_doc_id", ["doc_id"], unique=False)
        batch_op.create_index("ix_mem_tree_chunks_summary_id", ["summary_id"], unique=False)
        batch_op.create_index("ix_mem_tree_chunks_tree_id", ["tree_id"], unique=False)

    op.create_table(
        "mem_tree_summaries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tree_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(length=128), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("child_ids_json", sa.Text(), nullable=False),
        sa.Column("embedding_json", sa.Text(), nullable=True),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("level >= 1", name=op.f("ck_mem_tree_summaries_level")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mem_tree_summaries")),
    )
    with op.batch_alter_table("mem_tree_summaries", schema=None) as batch_op:
        batch_op.create_index("ix_mem_tree_summaries_parent_id", ["parent_id"], unique=False)
        batch_op.create_index("ix_mem_tree_summaries_tree_id_level", ["tree_id", "level"], unique=False)

    op.create_table(
        "memories",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("memory_type", sa.String(length=32), nullable=False),
        sa.Column("claim", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("authority", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("domains_json", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("provenance_json", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name=op.f("ck_memories_confidence")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memories")),
    )
    with op.batch_alter_table("memories", schema=None) as batch_op:
        batch_op.create_index("ix_memories_memory_type", ["memory_type"], unique=False)
        batch_op.create_index("ix_memories_status", ["status"], unique=False)

    op.create_table(
        "memory_retrieval_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("turn_index", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_type", sa.String(length=32), nullable=False),
        sa.Column("retrieval_strategy", sa.String(length=64), nullable=False),
        sa.Column("query_text", sa.Text(), nullable=False),
        sa.Column("query_len", sa.Integer(), nullable=False),
        sa.Column("top_score", sa.Float(), nullable=True),
        sa.Column("confidence_threshold", sa.Float(), nullable=True),
        sa.Column("result_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("latency_ms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("edge_types_json", sa.Text(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("error_context", sa.Text(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "failure_type IN ('no_hit', 'low_confidence', 'timeout', 'error')",
            name=op.f("ck_memory_retrieval_failures_failure_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_retrieval_failures")),
    )
    with op.batch_alter_table("memory_retrieval_failures", schema=None) as batch_op:
        batch_op.create_index("ix_memory_retrieval_failures_created_at_ms", ["created_at_ms"], unique=False)
        batch_op.create_index("ix_memory_retrieval_failures_failure_type", ["failure_type"], unique=False)
        batch_op.create_index(
            "ix_memory_retrieval_failures_retrieval_strategy", ["retrieval_strategy"], unique=False
        )

    op.create_table(
        "outcomes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("domain", sa.String(length=128), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("lesson", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=128), server_default=sa.text("('')"), nullable=False),
        sa.CheckConstraint("score IN (-1, 0, 1)", name=op.f("ck_outcomes_score")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
    )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outcomes_sender_id_timestamp_ms_id", ["sender_id", "timestamp_ms", "id"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f("ck_messages_role")),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_conversation_id", ["conversation_id"], unique=False)

    op.create_table(
        "supersessions",
        sa.Column("summary_id", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("decay_job_id", sa.String(length=64), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("source_kind IN ('memory', 'episode')", name=op.f("ck_supersessions_source_kind")),
        sa.ForeignKeyConstraint(
            ["summary_id"],
            ["memories.id"],
            name=op.f("fk_supersessions_summary_id_memories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("summary_id", "source_id", name=op.f("pk_supersessions")),
    )
    with op.batch_alter_table("supersessions", schema=None) as batch_op:
        batch_op.create_index("ix_supersessions_source_id", ["source_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("supersessions", schema=None) as batch_op:
        batch_op.drop_index("ix_supersessions_source_id")

    op.drop_table("supersessions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_conversation_id")

    op.drop_table("messages")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_outcomes_sender_id_timestamp_ms_id")

    op.drop_table("outcomes")
    with op.batch_alter_table("memory_retrieval_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_memory_retrieval_failures_retrieval_strategy")
        batch_op.drop_index("ix_memory_retrieval_failures_failure_type")
        batch_op.drop_index("ix_memory_retrieval_failures_created_at_ms")

    op.drop_table("memory_retrieval_failures")
    with op.batch_alter_table("memories", schema=None) as batch_op:
        batch_op.drop_index("ix_memories_status")
        batch_op.drop_index("ix_memories_memory_type")

    op.drop_table("memories")
    with op.batch_alter_table("mem_tree_summaries", schema=None) as batch_op:
        batch_op.drop_index("ix_mem_tree_summaries_tree_id_level")
        batch_op.drop_index("ix_mem_tree_summaries_parent_id")

    op.drop_table("mem_tree_summaries")
    with op.batch_alter_table("mem_tree_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_mem_tree_chunks_tree_id")
        batch_op.drop_index("ix_mem_tree_chunks_summary_id")
        batch_op.drop_index("ix_mem_tree_chunks_doc_id")

    op.drop_table("mem_tree_chunks")
    with op.batch_alter_table("mem_tree_buffers", schema=None) as batch_op:
        batch_op.drop_index("ix_mem_tree_buffers_opened_at_ms")

    op.drop_table("mem_tree_buffers")
    with op.batch_alter_table("mem_tree_buffer_items", schema=None) as batch_op:
        batch_op.drop_index("ix_mem_tree_buffer_items_tree_id_level")

    op.drop_table("mem_tree_buffer_items")
    op.drop_table("facts")
    op.drop_table("episodes")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_status_updated_at_ms")
        batch_op.drop_index("ix_conversations_started_at_ms")

    op.drop_table("conversations")
    with op.batch_alter_table("consolidation_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_consolidation_runs_started_at_ms")

    op.drop_table("consolidation_runs")
