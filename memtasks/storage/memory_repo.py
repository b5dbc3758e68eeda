"""Memories, episodes and supersession edges, as the decay runner needs them.

Every method takes an optional caller connection (see :func:`~memtasks.storage.rows.transaction`),
so the runner can commit a summary memory, its edges and the job's settle in one
transaction. Reads keep the requested order and report missing ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.compression import (
    Source,
    SourceKind,
    Summary,
    order_sources,
    source_kind_of,
)
from memtasks.domain.errors import ValidationError
from memtasks.storage.memory_tables import episodes, memories, supersessions
from memtasks.storage.rows import chunks, transaction

CODE_ROW_MALFORMED = "memory.row.malformed"


@dataclass(frozen=True, slots=True)
class SourceLookup:
    """The sources found, in requested order, and the requested ids that were not."""

    kind: SourceKind
    found: tuple[Source, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """One row of ``memories``."""

    id: str
    memory_type: str
    claim: str
    confidence: float
    authority: str
    status: str
    domains: tuple[str, ...]
    provenance: tuple[str, ...]
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class SupersessionEdge:
    """A summary supersedes a source (memory or episode), written by a decay job."""

    summary_id: str
    source_id: str
    source_kind: SourceKind
    decay_job_id: str | None
    created_at_ms: int


def new_memory_id() -> str:
    return f"mem_{uuid.uuid4().hex}"


def new_episode_id() -> str:
    return f"ep_{uuid.uuid4().hex}"


def _encode_list(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def _decode_list(row_id: str, column: str, value: str | None) -> tuple[str, ...]:
    try:
        items = json.loads(value) if value is not None else []
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValidationError(
            f"row {row_id}: {column} is not a JSON list of strings", code=CODE_ROW_MALFORMED
        )
    return tuple(items)


class MemoryStore:
    """Repository of memories, episodes and supersession edges (SQLAlchemy Core)."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    # ── reads ────────────────────────────────────────────────────────────────

    def fetch_sources(self, source_ids: Sequence[str], *, conn: Connection | None = None) -> SourceLookup:
        """The memories (``mem_…``) or episodes (``ep_…``) named, in requested order.

        Empty or mixed ids → :class:`ValidationError` (``decay.compress.source_missing`` /
        ``…source_kind_mismatch``); a row with bad JSON → ``memory.row.malformed``.
        """
        kind = source_kind_of(source_ids)
        by_id: dict[str, Source] = {}
        with transaction(self.engine, conn) as c:
            for part in chunks(list(source_ids)):
                for row in c.execute(self._select_sources(kind, part)):
                    by_id[row.id] = self._source(kind, row)
        return SourceLookup(
            kind=kind,
            found=tuple(by_id[i] for i in source_ids if i in by_id),
            missing=tuple(i for i in source_ids if i not in by_id),
        )

    def load_sources(
        self, source_ids: Sequence[str], *, conn: Connection | None = None
    ) -> tuple[Source, ...]:
        """Every named source in order, or ``decay.compress.source_missing`` naming the absent ones."""
        lookup = self.fetch_sources(source_ids, conn=conn)
        return order_sources(source_ids, {s.id: s for s in lookup.found})

    @staticmethod
    def _select_sources(kind: SourceKind, ids: Sequence[str]) -> Any:
        if kind is SourceKind.MEMORY:
            m = memories.c
            return select(
                m.id, m.claim.label("text"), m.confidence, m.authority, m.domains_json, m.provenance_json
            ).where(m.id.in_(ids))
        e = episodes.c
        return select(
            e.id, e.summary.label("text"), e.confidence, e.authority, e.domains_json, e.provenance_json
        ).where(e.id.in_(ids))

    @staticmethod
    def _source(kind: SourceKind, row: Row[Any]) -> Source:
        return Source(
            id=row.id,
            kind=kind,
            text=row.text,
            confidence=float(row.confidence),
            authority=row.authority,
            domains=_decode_list(row.id, "domains_json", row.domains_json),
            provenance=_decode_list(row.id, "provenance_json", row.provenance_json),
        )

    def get_memory(self, memory_id: str, *, conn: Connection | None = None) -> MemoryRow | None:
        with transaction(self.engine, conn) as c:
            row = c.execute(select(memories).where(memories.c.id == memory_id)).first()
        if row is None:
            return None
        return MemoryRow(
            id=row.id,
            memory_type=row.memory_type,
            claim=row.claim,
            confidence=float(row.confidence),
            authority=row.authority,
            status=row.status,
            domains=_decode_list(row.id, "domains_json", row.domains_json),
            provenance=_decode_list(row.id, "provenance_json", row.provenance_json),
            created_at_ms=row.created_at_ms,
            updated_at_ms=row.updated_at_ms,
        )

    def supersessions_of(self, summary_id: str, *, conn: Connection | None = None) -> list[SupersessionEdge]:
        """The edges from ``summary_id``, ordered by source id."""
        s = supersessions.c
        with transaction(self.engine, conn) as c:
            rows = c.execute(select(supersessions).where(s.summary_id == summary_id).order_by(s.source_id))
            return [
                SupersessionEdge(
                    summary_id=r.summary_id,
                    source_id=r.source_id,
                    source_kind=SourceKind(r.source_kind),
                    decay_job_id=r.decay_job_id,
                    created_at_ms=r.created_at_ms,
                )
                for r in rows
            ]

    def count_memories(self, *, memory_type: str | None = None, conn: Connection | None = None) -> int:
        stmt = select(func.count()).select_from(memories)
        if memory_type is not None:
            stmt = stmt.where(memories.c.memory_type == memory_type)
        with transaction(self.engine, conn) as c:
            return int(c.execute(stmt).scalar_one())

    def count_supersessions(self, *, conn: Connection | None = None) -> int:
        with transaction(self.engine, conn) as c:
            return int(c.execute(select(func.count()).select_from(supersessions)).scalar_one())

    # ── writes ───────────────────────────────────────────────────────────────

    def insert_summary(self, summary: Summary, *, conn: Connection | None = None) -> str:
        """Insert the summary as a new memory (id ``mem_<uuid hex>``); returns its id."""
        return self.insert_memory(
            claim=summary.claim,
            confidence=summary.confidence,
            authority=summary.authority,
            memory_type=summary.memory_type,
            status=summary.status,
            domains=summary.domains,
            provenance=summary.provenance,
            conn=conn,
        )

    def write_supersessions(
        self, summary_id: str, summary: Summary, *, decay_job_id: str | None, conn: Connection | None = None
    ) -> int:
        """One edge summary → source for each of ``summary.source_ids``; returns how many."""
        now = self.clock()
        rows = [
            {
                "summary_id": summary_id,
                "source_id": source_id,
                "source_kind": summary.source_kind.value,
                "decay_job_id": decay_job_id,
                "created_at_ms": now,
            }
            for source_id in summary.source_ids
        ]
        with transaction(self.engine, conn) as c:
            c.execute(supersessions.insert(), rows)
        return len(rows)

    def insert_memory(
        self,
        *,
        claim: str,
        confidence: float,
        authority: str,
        memory_type: str = "semantic",
        status: str = "active",
        domains: Sequence[str] = (),
        provenance: Sequence[str] = (),
        memory_id: str | None = None,
        conn: Connection | None = None,
    ) -> str:
        """Insert one memory; its id is ``memory_id`` or a new ``mem_<uuid hex>``."""
        memory_id = memory_id or new_memory_id()
        if not memory_id.startswith("mem_"):
            raise ValidationError(f"memory id {memory_id!r} must start with mem_", code=CODE_ROW_MALFORMED)
        now = self.clock()
        values = {
            "id": memory_id,
            "memory_type": memory_type,
            "claim": claim,
            "confidence": confidence,
            "authority": authority,
            "status": status,
            "domains_json": _encode_list(domains),
            "provenance_json": _encode_list(provenance),
            "created_at_ms": now,
            "updated_at_ms": now,
        }
        with transaction(self.engine, conn) as c:
            c.execute(memories.insert().values(values))
        return memory_id

    def insert_episode(
        self,
        *,
        summary: str,
        confidence: float,
        authority: str,
        domains: Sequence[str] = (),
        provenance: Sequence[str] = (),
        episode_id: str | None = None,
        conn: Connection | None = None,
    ) -> str:
        """Insert one episode; its id is ``episode_id`` or a new ``ep_<uuid hex>``."""
        episode_id = episode_id or new_episode_id()
        if not episode_id.startswith("ep_"):
            raise ValidationError(f"episode id {episode_id!r} must start with ep_", code=CODE_ROW_MALFORMED)
        now = self.clock()
        values = {
            "id": episode_id,
            "summary": summary,
            "confidence": confidence,
            "authority": authority,
            "domains_json": _encode_list(domains),
            "provenance_json": _encode_list(provenance),
            "created_at_ms": now,
            "updated_at_ms": now,
        }
        with transaction(self.engine, conn) as c:
            c.execute(episodes.insert().values(values))
        return episode_id


__all__ = [
    "CODE_ROW_MALFORMED",
    "MemoryRow",
    "MemoryStore",
    "SourceLookup",
    "SupersessionEdge",
    "new_episode_id",
    "new_memory_id",
]
