"""The memory tree's rows: chunks, buffers, buffer items and sealed summaries.

Handlers call these inside their job's transaction (every method that changes rows takes
the caller's connection). Buffers are the unit of locking: every change to a buffer's
items first takes the buffer row (:meth:`TreeStore.lock_buffer`), so an append and a
seal of the same buffer never interleave and no item can be sealed twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.errors import MalformedPayload, MemtasksError
from memtasks.domain.text import unstorable
from memtasks.domain.tree import MAX_ID_CHARS, MAX_SOURCE_CHARS
from memtasks.storage.memory_tables import mem_tree_buffer_items as items_t
from memtasks.storage.memory_tables import mem_tree_buffers as buffers_t
from memtasks.storage.memory_tables import mem_tree_chunks as chunks_t
from memtasks.storage.memory_tables import mem_tree_summaries as summaries_t
from memtasks.storage.rows import chunks, transaction

LOCK_ATTEMPTS = 20


class TreeConflict(MemtasksError):
    """Rows changed under a handler in a way its locks should have prevented; retry."""


@dataclass(frozen=True, slots=True)
class NewChunk:
    """A chunk an agent stores; extraction, embedding and placement follow as jobs."""

    id: str
    tree_id: str
    source_id: str
    content: str
    doc_id: str | None = None

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("id", self.id, MAX_ID_CHARS),
            ("tree_id", self.tree_id, MAX_ID_CHARS),
            ("source_id", self.source_id, MAX_SOURCE_CHARS),
        ):
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                raise MalformedPayload(
                    f"chunk {name} must be a non-empty string of at most {limit} characters"
                )
        if not isinstance(self.content, str):
            raise MalformedPayload("chunk content must be a string")
        if self.doc_id is not None and (
            not isinstance(self.doc_id, str) or not self.doc_id.strip() or len(self.doc_id) > MAX_SOURCE_CHARS
        ):
            raise MalformedPayload(
                f"chunk doc_id must be a non-empty string of at most {MAX_SOURCE_CHARS} characters"
            )
        for name, text in (
            ("id", self.id),
            ("tree_id", self.tree_id),
            ("source_id", self.source_id),
            ("doc_id", self.doc_id),
            ("content", self.content),
        ):
            problem = None if text is None else unstorable(text)
            if problem is not None:
                raise MalformedPayload(f"chunk {name} {problem}")


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    tree_id: str
    source_id: str
    doc_id: str | None
    content: str
    extracted: bool
    embedding_model: str | None
    summary_id: str | None


@dataclass(frozen=True, slots=True)
class BufferItem:
    item_id: str
    added_at_ms: int


@dataclass(frozen=True, slots=True)
class StaleBuffer:
    tree_id: str
    level: int
    count: int
    higher_levels_hold_items: bool


def _item_table(level: int) -> tuple[Table, Any]:
    """The table holding items of ``level`` and its parent-pointer column."""
    if level == 0:
        return chunks_t, chunks_t.c.summary_id
    return summaries_t, summaries_t.c.parent_id


class TreeStore:
    """Reads and writes of the memory tree. No job logic here."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    # ── chunks ───────────────────────────────────────────────────────────────

    def add_chunks(self, new: Sequence[NewChunk], *, conn: Connection | None = None) -> None:
        """Insert chunks (an agent's writes). An id already stored is an error."""
        now = self.clock()
        rows = [
            {
                "id": c.id,
                "tree_id": c.tree_id,
                "source_id": c.source_id,
                "doc_id": c.doc_id,
                "content": c.content,
                "created_at_ms": now,
            }
            for c in new
        ]
        with transaction(self.engine, conn) as c:
            for part in chunks(rows):
                c.execute(insert(chunks_t), list(part))

    def get_chunk(self, conn: Connection, chunk_id: str) -> Chunk | None:
        row = conn.execute(select(chunks_t).where(chunks_t.c.id == chunk_id)).first()
        if row is None:
            return None
        return Chunk(
            id=row.id,
            tree_id=row.tree_id,
            source_id=row.source_id,
            doc_id=row.doc_id,
            content=row.content,
            extracted=row.extracted_at_ms is not None,
            embedding_model=row.embedding_model,
            summary_id=row.summary_id,
        )

    def set_extraction(
        self, conn: Connection, chunk_id: str, entities: Sequence[str], keywords: Sequence[str]
    ) -> None:
        conn.execute(
            update(chunks_t)
            .where(chunks_t.c.id == chunk_id)
            .values(
                entities_json=json.dumps(list(entities), ensure_ascii=False),
                keywords_json=json.dumps(list(keywords), ensure_ascii=False),
                extracted_at_ms=self.clock(),
            )
        )

    # ── embeddings ───────────────────────────────────────────────────────────

    def unembedded(self, conn: Connection, level_zero: bool, model: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (id, content) of chunks (or summaries) not embedded by ``model``."""
        table = chunks_t if level_zero else summaries_t
        stmt = (
            select(table.c.id, table.c.content)
            .where(or_(table.c.embedding_model.is_(None), table.c.embedding_model != model))
            .order_by(table.c.id)
            .limit(limit)
        )
        return [(row.id, row.content) for row in conn.execute(stmt)]

    def set_embeddings(
        self, conn: Connection, level_zero: bool, model: str, vectors: Iterable[tuple[str, Sequence[float]]]
    ) -> None:
        table = chunks_t if level_zero else summaries_t
        for item_id, vector in vectors:
            conn.execute(
                update(table)
                .where(table.c.id == item_id)
                .values(embedding_json=json.dumps(list(vector)), embedding_model=model)
            )

    # ── buffers ──────────────────────────────────────────────────────────────

    def lock_buffer(self, conn: Connection, tree_id: str, level: int) -> None:
        """Create the buffer row if missing and hold it until the transaction ends.

        A seal that empties a buffer deletes its row. When that happens between our insert
        and our lock, the lock finds no row: insert again, until this transaction holds one
        (it must, or an item could land in a buffer that no flush ever finds).
        """
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        locked = (
            select(buffers_t.c.level)
            .where(buffers_t.c.tree_id == tree_id, buffers_t.c.level == level)
            .with_for_update()
        )
        for _ in range(LOCK_ATTEMPTS):
            now = self.clock()
            values = {"tree_id": tree_id, "level": level, "opened_at_ms": now, "updated_at_ms": now}
            conn.execute(dialect.insert(buffers_t).values(values).on_conflict_do_nothing())
            if conn.execute(locked).first() is not None:
                return
        raise TreeConflict(f"the buffer of {tree_id} level {level} kept disappearing; retry")

    def placement(self, conn: Connection, tree_id: str, level: int, item_id: str) -> str:
        """``missing``, ``sealed`` (has a parent), ``buffered`` or ``free`` (ready to append)."""
        table, parent = _item_table(level)
        where = [table.c.id == item_id, table.c.tree_id == tree_id]
        if level > 0:
            where.append(table.c.level == level)
        row = conn.execute(select(parent).where(*where)).first()
        if row is None:
            return "missing"
        if row[0] is not None:
            return "sealed"
        held = conn.execute(
            select(items_t.c.level).where(items_t.c.tree_id == tree_id, items_t.c.item_id == item_id)
        ).first()
        return "free" if held is None else "buffered"

    def append(self, conn: Connection, tree_id: str, level: int, item_id: str) -> int:
        """Add an item to its (locked) buffer; the number of items the buffer now holds."""
        now = self.clock()
        conn.execute(insert(items_t).values(tree_id=tree_id, level=level, item_id=item_id, added_at_ms=now))
        conn.execute(
            update(buffers_t)
            .where(buffers_t.c.tree_id == tree_id, buffers_t.c.level == level)
            .values(updated_at_ms=now)
        )
        return self.count(conn, tree_id, level)

    def count(self, conn: Connection, tree_id: str, level: int) -> int:
        stmt = select(func.count()).where(items_t.c.tree_id == tree_id, items_t.c.level == level)
        return int(conn.execute(stmt).scalar_one())

    def buffer_items(
        self, conn: Connection, tree_id: str, level: int, *, doc_id: str | None = None
    ) -> list[BufferItem]:
        """The buffer's items, oldest first; with ``doc_id``, only that document's chunks."""
        stmt = select(items_t.c.item_id, items_t.c.added_at_ms).where(
            items_t.c.tree_id == tree_id, items_t.c.level == level
        )
        if doc_id is not None:
            stmt = stmt.join(chunks_t, chunks_t.c.id == items_t.c.item_id).where(chunks_t.c.doc_id == doc_id)
        stmt = stmt.order_by(items_t.c.added_at_ms, items_t.c.item_id)
        return [BufferItem(row.item_id, row.added_at_ms) for row in conn.execute(stmt)]

    def higher_levels_hold_items(self, conn: Connection, tree_id: str, level: int) -> bool:
        stmt = select(items_t.c.item_id).where(items_t.c.tree_id == tree_id, items_t.c.level > level).limit(1)
        return conn.execute(stmt).first() is not None

    def stale_buffers(self, conn: Connection, opened_before_ms: int) -> list[StaleBuffer]:
        """Buffers opened before the cut-off, with their item counts, lowest level first."""
        counts = (
            select(items_t.c.tree_id, items_t.c.level, func.count().label("n"))
            .group_by(items_t.c.tree_id, items_t.c.level)
            .subquery()
        )
        stale = conn.execute(
            select(buffers_t.c.tree_id, buffers_t.c.level, counts.c.n)
            .join(counts, and_(counts.c.tree_id == buffers_t.c.tree_id, counts.c.level == buffers_t.c.level))
            .where(buffers_t.c.opened_at_ms <= opened_before_ms)
            .order_by(buffers_t.c.tree_id, buffers_t.c.level)
        ).all()
        if not stale:
            return []
        trees = sorted({row.tree_id for row in stale})
        top: dict[str, int] = {}
        for part in chunks(trees):
            stmt = (
                select(items_t.c.tree_id, func.max(items_t.c.level))
                .where(items_t.c.tree_id.in_(part))
                .group_by(items_t.c.tree_id)
            )
            top.update({tree: int(level) for tree, level in conn.execute(stmt)})
        return [
            StaleBuffer(row.tree_id, row.level, int(row.n), top.get(row.tree_id, -1) > row.level)
            for row in stale
        ]

    # ── sealing ──────────────────────────────────────────────────────────────

    def texts(self, conn: Connection, level: int, ids: Sequence[str]) -> list[str]:
        """Contents of the items ``ids`` of ``level``, in the order given."""
        table, _ = _item_table(level)
        found: dict[str, str] = {}
        for part in chunks(ids):
            rows = conn.execute(select(table.c.id, table.c.content).where(table.c.id.in_(part)))
            found.update((row.id, row.content) for row in rows)
        missing = [item for item in ids if item not in found]
        if missing:
            raise TreeConflict(f"buffered items vanished: {missing[:5]}")
        return [found[item] for item in ids]

    def seal_items(
        self,
        conn: Connection,
        *,
        summary_id: str,
        tree_id: str,
        level: int,
        child_ids: Sequence[str],
        content: str,
        embedding: Sequence[float],
        model: str,
        doc_id: str | None = None,
    ) -> None:
        """Store the summary of ``child_ids`` one level up and take them out of their buffer.

        Raises :class:`TreeConflict` (and the caller's transaction rolls back) when any child
        already has a parent or is no longer buffered.
        """
        conn.execute(
            insert(summaries_t).values(
                id=summary_id,
                tree_id=tree_id,
                level=level + 1,
                doc_id=doc_id,
                content=content,
                child_ids_json=json.dumps(list(child_ids)),
                embedding_json=json.dumps(list(embedding)),
                embedding_model=model,
                created_at_ms=self.clock(),
            )
        )
        table, parent = _item_table(level)
        adopted = removed = 0
        for part in chunks(child_ids):
            adopted += conn.execute(
                update(table).where(table.c.id.in_(part), parent.is_(None)).values({parent.key: summary_id})
            ).rowcount
            removed += conn.execute(
                delete(items_t).where(
                    items_t.c.tree_id == tree_id, items_t.c.level == level, items_t.c.item_id.in_(part)
                )
            ).rowcount
        if adopted != len(child_ids) or removed != len(child_ids):
            raise TreeConflict(
                f"sealing {len(child_ids)} items of {tree_id} level {level}: "
                f"{adopted} had no parent, {removed} were buffered"
            )

    def drop_if_empty(self, conn: Connection, tree_id: str, level: int) -> None:
        """Remove a buffer row that holds no item (one :meth:`lock_buffer` created for nothing)."""
        held = select(items_t.c.item_id).where(items_t.c.tree_id == tree_id, items_t.c.level == level)
        conn.execute(
            delete(buffers_t).where(
                buffers_t.c.tree_id == tree_id, buffers_t.c.level == level, ~held.exists()
            )
        )

    def refresh_buffer(self, conn: Connection, tree_id: str, level: int) -> None:
        """After a seal: drop an empty buffer, or date it by its oldest remaining item."""
        oldest = conn.execute(
            select(func.min(items_t.c.added_at_ms)).where(
                items_t.c.tree_id == tree_id, items_t.c.level == level
            )
        ).scalar_one()
        where = and_(buffers_t.c.tree_id == tree_id, buffers_t.c.level == level)
        if oldest is None:
            conn.execute(delete(buffers_t).where(where))
        else:
            conn.execute(
                update(buffers_t).where(where).values(opened_at_ms=oldest, updated_at_ms=self.clock())
            )


__all__ = ["BufferItem", "Chunk", "NewChunk", "StaleBuffer", "TreeConflict", "TreeStore"]
