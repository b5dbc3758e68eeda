"""The agent's memory: conversations, outcomes, facts, memories, episodes, the memory
tree, the consolidation ledger and retrieval failures. Times are Unix milliseconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from memtasks.storage.tables import metadata


def _row_id() -> Column[int]:
    """An auto-incrementing 64-bit id (INTEGER PRIMARY KEY on SQLite)."""
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("sender_id", String(128), nullable=False),
    Column("project", String(128), nullable=False, server_default=text("''")),
    Column("status", String(16), nullable=False, server_default=text("'active'")),
    Column("summary", Text),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("last_activity_ms", BigInteger, nullable=False),
    CheckConstraint("status IN ('active', 'closed')", name="status"),
    Index("ix_conversations_started_at_ms", "started_at_ms"),
    Index("ix_conversations_status_updated_at_ms", "status", "updated_at_ms"),
)

messages = Table(
    "messages",
    metadata,
    _row_id(),
    Column(
        "conversation_id",
        String(64),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("metadata_json", Text),
    CheckConstraint("role IN ('user', 'assistant')", name="role"),
    Index("ix_messages_conversation_id", "conversation_id"),
)

outcomes = Table(
    "outcomes",
    metadata,
    _row_id(),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("sender_id", String(128), nullable=False),
    Column("domain", String(128), nullable=False),
    Column("score", SmallInteger, nullable=False),
    Column("lesson", Text, nullable=False),
    Column("source", String(128), nullable=False),
    Column("project", String(128), nullable=False, server_default=text("''")),
    CheckConstraint("score IN (-1, 0, 1)", name="score"),
    # Newest first per sender, id as the tie-break: the prune's window order.
    Index("ix_outcomes_sender_id_timestamp_ms_id", "sender_id", "timestamp_ms", "id"),
)

facts = Table(
    "facts",
    metadata,
    _row_id(),
    Column("sender_id", String(128), nullable=False),
    Column("key", String(256), nullable=False),
    Column("value", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    UniqueConstraint("sender_id", "key"),
)

memories = Table(
    "memories",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("memory_type", String(32), nullable=False),
    Column("claim", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("authority", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("domains_json", Text, nullable=False, server_default=text("'[]'")),
    Column("provenance_json", Text, nullable=False, server_default=text("'[]'")),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
    Index("ix_memories_status", "status"),
    Index("ix_memories_memory_type", "memory_type"),
)

episodes = Table(
    "episodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("summary", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("authority", String(32), nullable=False),
    Column("domains_json", Text, nullable=False, server_default=text("'[]'")),
    Column("provenance_json", Text, nullable=False, server_default=text("'[]'")),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
)

supersessions = Table(
    "supersessions",
    metadata,
    Column("summary_id", String(64), ForeignKey("memories.id", ondelete="CASCADE"), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("decay_job_id", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("summary_id", "source_id"),
    CheckConstraint("source_kind IN ('memory', 'episode')", name="source_kind"),
    Index("ix_supersessions_source_id", "source_id"),
)

# ── the memory tree ──────────────────────────────────────────────────────────
# A chunk is appended to its tree's level-0 buffer; a full or stale buffer is sealed into
# a summary one level up, which is appended to that level's buffer, and so on.

mem_tree_chunks = Table(
    "mem_tree_chunks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tree_id", String(64), nullable=False),
    Column("source_id", String(128), nullable=False),
    Column("doc_id", String(128)),
    Column("content", Text, nullable=False),
    Column("entities_json", Text),
    Column("keywords_json", Text),
    Column("extracted_at_ms", BigInteger),
    Column("embedding_json", Text),
    Column("embedding_model", String(128)),
    Column("summary_id", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_mem_tree_chunks_tree_id", "tree_id"),
    Index("ix_mem_tree_chunks_embedding_model", "embedding_model"),
    Index("ix_mem_tree_chunks_summary_id", "summary_id"),
    Index("ix_mem_tree_chunks_doc_id", "doc_id"),
)

mem_tree_buffers = Table(
    "mem_tree_buffers",
    metadata,
    Column("tree_id", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("opened_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("tree_id", "level"),
    CheckConstraint("level >= 0", name="level"),
    Index("ix_mem_tree_buffers_opened_at_ms", "opened_at_ms"),
)

mem_tree_buffer_items = Table(
    "mem_tree_buffer_items",
    metadata,
    Column("tree_id", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("added_at_ms", BigInteger, nullable=False),
    # An item (chunk or summary) sits in at most one buffer of its tree.
    PrimaryKeyConstraint("tree_id", "item_id"),
    Index("ix_mem_tree_buffer_items_tree_id_level", "tree_id", "level"),
)

mem_tree_summaries = Table(
    "mem_tree_summaries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tree_id", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("doc_id", String(128)),
    Column("content", Text, nullable=False),
    Column("child_ids_json", Text, nullable=False),
    Column("embedding_json", Text),
    Column("embedding_model", String(128)),
    Column("parent_id", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("level >= 1", name="level"),
    Index("ix_mem_tree_summaries_embedding_model", "embedding_model"),
    Index("ix_mem_tree_summaries_tree_id_level", "tree_id", "level"),
    Index("ix_mem_tree_summaries_parent_id", "parent_id"),
)

# ── the consolidation ledger ─────────────────────────────────────────────────

consolidation_runs = Table(
    "consolidation_runs",
    metadata,
    _row_id(),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("finished_at_ms", BigInteger),
    Column("trigger", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False, server_default=text("false")),
    Column("outcome", String(16), nullable=False),
    Column("gates_json", Text, nullable=False, server_default=text("'{}'")),
    Column("messages_pruned", Integer, nullable=False, server_default=text("0")),
    Column("outcomes_pruned", Integer, nullable=False, server_default=text("0")),
    Column("duration_ms", Integer),
    Column("error", Text),
    CheckConstraint("outcome IN ('ran', 'skipped', 'failed', 'dry_run')", name="outcome"),
    Index("ix_consolidation_runs_started_at_ms", "started_at_ms"),
)

# ── retrieval failures ───────────────────────────────────────────────────────

memory_retrieval_failures = Table(
    "memory_retrieval_failures",
    metadata,
    _row_id(),
    Column("conversation_id", String(64)),
    Column("turn_index", Integer, nullable=False, server_default=text("0")),
    Column("failure_type", String(32), nullable=False),
    Column("retrieval_strategy", String(64), nullable=False),
    Column("query_text", Text, nullable=False),
    Column("query_len", Integer, nullable=False),
    Column("top_score", Float),
    Column("confidence_threshold", Float),
    Column("result_count", Integer, nullable=False, server_default=text("0")),
    Column("latency_ms", Integer, nullable=False, server_default=text("0")),
    Column("edge_types_json", Text, nullable=False, server_default=text("'[]'")),
    Column("error_context", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("failure_type IN ('no_hit', 'low_confidence', 'timeout', 'error')", name="failure_type"),
    Index("ix_memory_retrieval_failures_failure_type", "failure_type"),
    Index("ix_memory_retrieval_failures_retrieval_strategy", "retrieval_strategy"),
    Index("ix_memory_retrieval_failures_created_at_ms", "created_at_ms"),
)
