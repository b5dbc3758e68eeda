"""What the main job reports at its end, read from the tables (only this run's rows)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from memtasks.config import Settings
from memtasks.services.retrieval_failures import LoggerStats
from memtasks.storage.memory_tables import (
    consolidation_runs,
    mem_tree_buffer_items,
    mem_tree_chunks,
    mem_tree_summaries,
    memory_retrieval_failures,
)
from memtasks.storage.rows import reading
from memtasks.storage.tables import decay_jobs, mem_tree_jobs


def percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True, slots=True)
class Progress:
    """Jobs of this run per queue: (finished, total)."""

    by_kind: dict[str, tuple[int, int]]
    decay: tuple[int, int]
    active: int


def _job_states(conn: Any, since_ms: int) -> list[Any]:
    t = mem_tree_jobs
    return list(
        conn.execute(
            select(t.c.kind, t.c.status, func.count())
            .where(t.c.created_at_ms >= since_ms)
            .group_by(t.c.kind, t.c.status)
        )
    )


def _decay_states(conn: Any, since_ms: int) -> list[Any]:
    return list(
        conn.execute(
            select(decay_jobs.c.state, func.count())
            .where(decay_jobs.c.created_at_ms >= since_ms)
            .group_by(decay_jobs.c.state)
        )
    )


def progress(engine: Engine, since_ms: int) -> Progress:
    with reading(engine) as conn:
        rows = _job_states(conn, since_ms)
        decay = _decay_states(conn, since_ms)
    by_kind: dict[str, tuple[int, int]] = {}
    active = 0
    for kind, status, count in rows:
        done, total = by_kind.get(kind, (0, 0))
        finished = status in {"done", "failed", "cancelled"}
        by_kind[kind] = (done + (count if finished else 0), total + count)
        active += 0 if finished else count
    decay_total = sum(int(c) for _, c in decay)
    decay_done = sum(int(c) for s, c in decay if s in {"completed", "failed", "cancelled"})
    return Progress(by_kind, (decay_done, decay_total), active + decay_total - decay_done)


def trees_settled(engine: Engine, run_id: str) -> bool:
    """Every tree of the run has one top summary, and nothing else waits in a buffer."""
    like = f"{run_id}-%"
    with reading(engine) as conn:
        roots = conn.execute(
            select(mem_tree_summaries.c.tree_id, func.count())
            .where(mem_tree_summaries.c.tree_id.like(like), mem_tree_summaries.c.parent_id.is_(None))
            .group_by(mem_tree_summaries.c.tree_id)
        ).all()
        trees = conn.execute(
            select(func.count(func.distinct(mem_tree_chunks.c.tree_id))).where(
                mem_tree_chunks.c.tree_id.like(like)
            )
        ).scalar_one()
        buffered = conn.execute(
            select(func.count()).where(mem_tree_buffer_items.c.tree_id.like(like))
        ).scalar_one()
    return len(roots) == trees and all(n == 1 for _, n in roots) and buffered == trees


def retrieval_note(stats: LoggerStats, settings: Settings) -> str | None:
    """Why some logged retrieval failures were not stored, and what avoids it; None when all were."""
    reasons = []
    if stats.dropped:
        reasons.append(
            f"{stats.dropped} dropped: logged while the logger's queue was full (it holds "
            f"MEMTASKS_RETRIEVAL_FAILURE_CAPACITY={settings.retrieval_failure_capacity} records waiting; "
            f"its writer sends MEMTASKS_RETRIEVAL_FAILURE_BATCH_SIZE={settings.retrieval_failure_batch_size}"
            " at a time, at least every MEMTASKS_RETRIEVAL_FAILURE_FLUSH_INTERVAL_S="
            f"{settings.retrieval_failure_flush_interval_s:g} s). The logger drops rather than slow the "
            "recall path down: a larger capacity holds a larger burst, a larger batch empties the queue "
            "sooner"
        )
    if stats.lost:
        reasons.append(
            f"{stats.lost} lost: their batches could not be sent (the broker refused them after the "
            "retries) or were still queued when the logger shut down: see the warning in the log"
        )
    return "; ".join(reasons) or None


def build_report(
    engine: Engine, run_id: str, since_ms: int, logger: LoggerStats, settings: Settings
) -> dict[str, Any]:
    t = mem_tree_jobs
    like = f"{run_id}-%"
    with reading(engine) as conn:
        states = _job_states(conn, since_ms)
        latencies = conn.execute(
            select(t.c.kind, t.c.completed_at_ms - t.c.created_at_ms).where(
                t.c.created_at_ms >= since_ms, t.c.status == "done"
            )
        ).all()
        decay = _decay_states(conn, since_ms)
        runs = conn.execute(
            select(consolidation_runs)
            .where(consolidation_runs.c.started_at_ms >= since_ms)
            .order_by(consolidation_runs.c.id)
        ).all()
        levels = conn.execute(
            select(mem_tree_summaries.c.level, func.count())
            .where(mem_tree_summaries.c.tree_id.like(like))
            .group_by(mem_tree_summaries.c.level)
        ).all()
        stored = conn.execute(
            select(func.count()).where(memory_retrieval_failures.c.created_at_ms >= since_ms)
        ).scalar_one()
    jobs: dict[str, dict[str, int]] = {}
    for kind, status, count in states:
        jobs.setdefault(kind, {})[status] = int(count)
    per_kind: dict[str, list[int]] = {}
    for kind, ms in latencies:
        per_kind.setdefault(kind, []).append(int(ms))
    ran = [r for r in runs if r.outcome == "ran"]
    return {
        "run_id": run_id,
        "jobs": jobs,
        "latency_ms": {
            kind: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "n": len(v)}
            for kind, v in sorted(per_kind.items())
        },
        "decay_jobs": {str(s): int(c) for s, c in decay},
        "consolidation": {
            "runs": len(runs),
            "ran": len(ran),
            "skipped": sum(r.outcome == "skipped" for r in runs),
            "messages_pruned": sum(r.messages_pruned for r in ran),
            "outcomes_pruned": sum(r.outcomes_pruned for r in ran),
        },
        "summaries_by_level": {int(level): int(count) for level, count in sorted(levels)},
        "retrieval_failures": {
            "logged": logger.logged,
            "stored": int(stored),
            "written_by_logger": logger.written,
            "dropped": logger.dropped,
            "lost": logger.lost,
            "note": retrieval_note(logger, settings),
        },
    }


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)
