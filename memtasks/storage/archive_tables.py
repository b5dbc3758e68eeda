"""The archive: what the prunes took, kept for a grace period before it is purged.

Each archive table holds its source table's columns as they were (same names, same types:
a restore copies them back byte for byte) and when the row was archived. Consolidation's
archives also name the run that archived the row (an id of the ``consolidation_runs``
ledger) and are keyed by run and id, so a run can be listed and restored as a whole — and
so a message id SQLite hands out again after the highest ids were pruned can be archived
again by a later run. The job archives are keyed by the job's id (job ids are never reused).
No constraint, default or index of the source is copied: the archive only stores.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, Table

from memtasks.storage.memory_tables import messages, outcomes
from memtasks.storage.tables import decay_jobs, mem_tree_jobs, metadata


def _columns_of(source: Table, *, with_run: bool) -> list[Column[Any]]:
    """The source's columns, plain (same name and type, nullable unless part of the key), then
    when the row was archived and, with ``with_run``, by which consolidation run."""
    columns: list[Column[Any]] = [
        Column(c.name, c.type, primary_key=c.primary_key and not with_run, nullable=c.nullable)
        for c in source.columns
    ]
    columns.append(Column("archived_at_ms", BigInteger, nullable=False))
    if with_run:
        columns.append(Column("run_id", BigInteger, nullable=False))
    return columns


archived_messages = Table(
    "archived_messages",
    metadata,
    *_columns_of(messages, with_run=True),
    PrimaryKeyConstraint("run_id", "id"),
    Index("ix_archived_messages_conversation_id", "conversation_id"),
    Index("ix_archived_messages_archived_at_ms", "archived_at_ms"),
)

archived_outcomes = Table(
    "archived_outcomes",
    metadata,
    *_columns_of(outcomes, with_run=True),
    PrimaryKeyConstraint("run_id", "id"),
    Index("ix_archived_outcomes_archived_at_ms", "archived_at_ms"),
)

archived_mem_tree_jobs = Table(
    "archived_mem_tree_jobs",
    metadata,
    *_columns_of(mem_tree_jobs, with_run=False),
    Index("ix_archived_mem_tree_jobs_archived_at_ms", "archived_at_ms"),
)

archived_decay_jobs = Table(
    "archived_decay_jobs",
    metadata,
    *_columns_of(decay_jobs, with_run=False),
    Index("ix_archived_decay_jobs_archived_at_ms", "archived_at_ms"),
)

ARCHIVE_OF: dict[str, Table] = {
    "messages": archived_messages,
    "outcomes": archived_outcomes,
    "mem_tree_jobs": archived_mem_tree_jobs,
    "decay_jobs": archived_decay_jobs,
}
"""Source table name → its archive."""

__all__ = [
    "ARCHIVE_OF",
    "archived_decay_jobs",
    "archived_mem_tree_jobs",
    "archived_messages",
    "archived_outcomes",
]
