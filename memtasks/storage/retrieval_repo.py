"""Retrieval failures in `memory_retrieval_failures`: batch insert, retention purge, report.

Times are integer Unix milliseconds and are compared as integers, never as text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.errors import ValidationError
from memtasks.domain.retrieval import CODE_RETENTION, FailureType, RetrievalFailure
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.rows import reading, transaction

t = memory_retrieval_failures
PURGE_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class FailureSummary:
    """One line of the report: the failures of one type and strategy in the window."""

    failure_type: FailureType
    retrieval_strategy: str
    count: int
    avg_latency_ms: float
    max_latency_ms: int
    avg_result_count: float
    avg_top_score: float | None
    first_at_ms: int
    last_at_ms: int


class RetrievalFailures:
    """Repository of retrieval failures. ``clock`` stamps records logged without a time."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    def insert_batch(self, records: Sequence[RetrievalFailure], *, conn: Connection | None = None) -> int:
        """Insert ``records`` in one transaction (one executemany); returns how many."""
        if not records:
            return 0
        now = self.clock()
        rows = [_row(record, now) for record in records]
        with transaction(self.engine, conn) as c:
            c.execute(insert(t), rows)
        return len(rows)

    def purge_before(self, cutoff_ms: int, *, batch: int = PURGE_BATCH) -> int:
        """Delete the rows created strictly before ``cutoff_ms``, ``batch`` rows per transaction."""
        if batch < 1:
            raise ValidationError(f"purge batch must be at least 1, got {batch}", code=CODE_RETENTION)
        total = 0
        while True:
            ids = select(t.c.id).where(t.c.created_at_ms < cutoff_ms).limit(batch).scalar_subquery()
            with self.engine.begin() as c:
                deleted = c.execute(delete(t).where(t.c.id.in_(ids))).rowcount
            total += deleted
            if deleted < batch:
                return total

    def report(self, *, since_ms: int | None = None, until_ms: int | None = None) -> list[FailureSummary]:
        """Failures grouped by type and strategy in ``[since_ms, until_ms)``, most frequent first."""
        stmt = select(
            t.c.failure_type,
            t.c.retrieval_strategy,
            func.count(),
            func.avg(t.c.latency_ms),
            func.max(t.c.latency_ms),
            func.avg(t.c.result_count),
            func.avg(t.c.top_score),
            func.min(t.c.created_at_ms),
            func.max(t.c.created_at_ms),
        ).group_by(t.c.failure_type, t.c.retrieval_strategy)
        if since_ms is not None:
            stmt = stmt.where(t.c.created_at_ms >= since_ms)
        if until_ms is not None:
            stmt = stmt.where(t.c.created_at_ms < until_ms)
        with reading(self.engine) as c:
            rows = c.execute(stmt).all()
        summaries = [
            FailureSummary(
                failure_type=FailureType(kind),
                retrieval_strategy=str(strategy),
                count=int(count),
                avg_latency_ms=float(avg_latency),
                max_latency_ms=int(max_latency),
                avg_result_count=float(avg_results),
                avg_top_score=None if avg_score is None else float(avg_score),
                first_at_ms=int(first),
                last_at_ms=int(last),
            )
            for kind, strategy, count, avg_latency, max_latency, avg_results, avg_score, first, last in rows
        ]
        # Sorted here, not in SQL: collations differ between backends.
        summaries.sort(key=lambda s: (-s.count, s.failure_type.value, s.retrieval_strategy))
        return summaries

    def report_window(self, window_ms: int) -> list[FailureSummary]:
        """The report over the last ``window_ms`` milliseconds of the clock."""
        return self.report(since_ms=self.clock() - window_ms)

    def count(self, *, since_ms: int | None = None) -> int:
        stmt = select(func.count()).select_from(t)
        if since_ms is not None:
            stmt = stmt.where(t.c.created_at_ms >= since_ms)
        with reading(self.engine) as c:
            return int(c.execute(stmt).scalar_one())


def _row(record: RetrievalFailure, now_ms: int) -> dict[str, Any]:
    return {
        "conversation_id": record.conversation_id,
        "turn_index": record.turn_index,
        "failure_type": str(record.failure_type),
        "retrieval_strategy": record.retrieval_strategy,
        "query_text": record.query_text,
        "query_len": record.query_len,
        "top_score": record.top_score,
        "confidence_threshold": record.confidence_threshold,
        "result_count": record.result_count,
        "latency_ms": record.latency_ms,
        "edge_types_json": json.dumps(list(record.edge_types)),
        "error_context": record.error_context,
        "created_at_ms": now_ms if record.created_at_ms is None else record.created_at_ms,
    }
