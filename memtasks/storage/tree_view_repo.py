"""Reads of the memory trees for an operator (the web console): the trees, one tree's levels,
buffers and summaries, a summary's children, a chunk's path up to the root. Reads only."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from memtasks.storage.memory_tables import (
    mem_tree_buffer_items as items,
)
from memtasks.storage.memory_tables import (
    mem_tree_buffers as buffers,
)
from memtasks.storage.memory_tables import (
    mem_tree_chunks as chunks,
)
from memtasks.storage.memory_tables import (
    mem_tree_summaries as summaries,
)
from memtasks.storage.rows import reading

PREVIEW_CHARS = 240


@dataclass(frozen=True, slots=True)
class TreeLine:
    tree_id: str
    chunks: int
    summaries: int
    top_level: int


@dataclass(frozen=True, slots=True)
class Node:
    """A summary (level ≥ 1) or a chunk (level 0) of a tree."""

    id: str
    tree_id: str
    level: int
    preview: str
    children: int
    parent_id: str | None
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class BufferLine:
    level: int
    opened_at_ms: int
    updated_at_ms: int
    item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TreeShape:
    tree_id: str
    roots: tuple[Node, ...]
    """Summaries and chunks that nothing summarises yet, highest level first."""
    levels: dict[int, int]
    """How many nodes each level holds (0: chunks)."""
    buffers: tuple[BufferLine, ...]


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _children_of(child_ids_json: str) -> list[str]:
    try:
        decoded = json.loads(child_ids_json)
    except ValueError:
        return []
    return [str(i) for i in decoded] if isinstance(decoded, list) else []


class TreeViews:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def trees(self, *, search: str | None = None, limit: int = 100) -> list[TreeLine]:
        """Trees by id, with their sizes; ``search``: a tree id prefix."""
        by_chunks = select(chunks.c.tree_id, func.count().label("n")).group_by(chunks.c.tree_id)
        by_summaries = select(
            summaries.c.tree_id, func.count().label("n"), func.max(summaries.c.level).label("top")
        ).group_by(summaries.c.tree_id)
        if search:
            by_chunks = by_chunks.where(chunks.c.tree_id.startswith(search, autoescape=True))
            by_summaries = by_summaries.where(summaries.c.tree_id.startswith(search, autoescape=True))
        with reading(self.engine) as c:
            counted = {str(r.tree_id): int(r.n) for r in c.execute(by_chunks)}
            tops = {str(r.tree_id): (int(r.n), int(r.top)) for r in c.execute(by_summaries)}
        names = sorted(set(counted) | set(tops))[:limit]
        return [
            TreeLine(name, counted.get(name, 0), tops.get(name, (0, 0))[0], tops.get(name, (0, 0))[1])
            for name in names
        ]

    def shape(self, tree_id: str) -> TreeShape | None:
        with reading(self.engine) as c:
            levels = {
                int(level): int(n)
                for level, n in c.execute(
                    select(summaries.c.level, func.count())
                    .where(summaries.c.tree_id == tree_id)
                    .group_by(summaries.c.level)
                )
            }
            chunk_count = int(c.execute(select(func.count()).where(chunks.c.tree_id == tree_id)).scalar_one())
            if chunk_count:
                levels[0] = chunk_count
            if not levels:
                return None
            root_summaries = c.execute(
                select(summaries)
                .where(summaries.c.tree_id == tree_id, summaries.c.parent_id.is_(None))
                .order_by(summaries.c.level.desc(), summaries.c.created_at_ms, summaries.c.id)
            ).all()
            loose_chunks = c.execute(
                select(chunks)
                .where(chunks.c.tree_id == tree_id, chunks.c.summary_id.is_(None))
                .order_by(chunks.c.created_at_ms, chunks.c.id)
            ).all()
            open_buffers = c.execute(
                select(buffers).where(buffers.c.tree_id == tree_id).order_by(buffers.c.level)
            ).all()
            held = c.execute(
                select(items.c.level, items.c.item_id)
                .where(items.c.tree_id == tree_id)
                .order_by(items.c.level, items.c.added_at_ms, items.c.item_id)
            ).all()
        by_level: dict[int, list[str]] = {}
        for level, item_id in held:
            by_level.setdefault(int(level), []).append(str(item_id))
        roots = [self._summary(r) for r in root_summaries] + [self._chunk(r) for r in loose_chunks]
        return TreeShape(
            tree_id=tree_id,
            roots=tuple(roots),
            levels=dict(sorted(levels.items(), reverse=True)),
            buffers=tuple(
                BufferLine(
                    int(b.level),
                    int(b.opened_at_ms),
                    int(b.updated_at_ms),
                    tuple(by_level.get(int(b.level), [])),
                )
                for b in open_buffers
            ),
        )

    @staticmethod
    def _summary(row: object) -> Node:
        r = row._mapping  # type: ignore[attr-defined]
        return Node(
            id=str(r["id"]),
            tree_id=str(r["tree_id"]),
            level=int(r["level"]),
            preview=_preview(str(r["content"])),
            children=len(_children_of(str(r["child_ids_json"]))),
            parent_id=None if r["parent_id"] is None else str(r["parent_id"]),
            created_at_ms=int(r["created_at_ms"]),
        )

    @staticmethod
    def _chunk(row: object) -> Node:
        r = row._mapping  # type: ignore[attr-defined]
        return Node(
            id=str(r["id"]),
            tree_id=str(r["tree_id"]),
            level=0,
            preview=_preview(str(r["content"])),
            children=0,
            parent_id=None if r["summary_id"] is None else str(r["summary_id"]),
            created_at_ms=int(r["created_at_ms"]),
        )

    def node(self, node_id: str) -> Node | None:
        with reading(self.engine) as c:
            row = c.execute(select(summaries).where(summaries.c.id == node_id)).one_or_none()
            if row is not None:
                return self._summary(row)
            row = c.execute(select(chunks).where(chunks.c.id == node_id)).one_or_none()
        return None if row is None else self._chunk(row)

    def children(self, summary_id: str) -> list[Node]:
        """A summary's children in the order it summarised them (chunks for level 1)."""
        with reading(self.engine) as c:
            row = c.execute(select(summaries).where(summaries.c.id == summary_id)).one_or_none()
            if row is None:
                return []
            order = _children_of(str(row.child_ids_json))
            if int(row.level) == 1:
                found = [
                    self._chunk(r) for r in c.execute(select(chunks).where(chunks.c.summary_id == summary_id))
                ]
            else:
                found = [
                    self._summary(r)
                    for r in c.execute(select(summaries).where(summaries.c.parent_id == summary_id))
                ]
        rank = {node_id: i for i, node_id in enumerate(order)}
        return sorted(found, key=lambda n: (rank.get(n.id, len(rank)), n.id))

    def path(self, node_id: str, *, max_depth: int = 64) -> list[Node]:
        """The node, then each summary above it, up to the root (bounded against a cycle)."""
        out: list[Node] = []
        current = self.node(node_id)
        while current is not None and len(out) < max_depth:
            out.append(current)
            current = None if current.parent_id is None else self.node(current.parent_id)
        return out


__all__ = ["BufferLine", "Node", "TreeLine", "TreeShape", "TreeViews"]
