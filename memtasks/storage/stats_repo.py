"""Read-only counts of the job tables, for ``memtasks status`` and the metrics exporter."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from memtasks.storage.rows import reading
from memtasks.storage.tables import decay_jobs as d
from memtasks.storage.tables import mem_tree_jobs as t


@dataclass(frozen=True, slots=True)
class KindStats:
    """One job kind: rows by status, how long the oldest due ready row has waited, and so on."""

    kind: str
    by_status: dict[str, int]
    oldest_ready_age_ms: int | None
    expired_leases: int
    waiting_retry: int
    failed_by_class: dict[str, int]


@dataclass(frozen=True, slots=True)
class QueueStats:
    kinds: tuple[KindStats, ...]
    decay_by_state: dict[str, int]
    decay_expired_leases: int


def _pairs(rows: Iterable[Any]) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in rows}


def queue_stats(engine: Engine, now_ms: int) -> QueueStats:
    """Every count in one read transaction (a consistent snapshot)."""
    with reading(engine) as c, c.begin():
        by_status = c.execute(select(t.c.kind, t.c.status, func.count()).group_by(t.c.kind, t.c.status)).all()
        oldest = _pairs(
            c.execute(
                select(t.c.kind, func.min(t.c.available_at_ms))
                .where(t.c.status == "ready", t.c.available_at_ms <= now_ms)
                .group_by(t.c.kind)
            )
        )
        expired = _pairs(
            c.execute(
                select(t.c.kind, func.count())
                .where(t.c.status == "running", t.c.locked_until_ms < now_ms)
                .group_by(t.c.kind)
            )
        )
        retrying = _pairs(
            c.execute(
                select(t.c.kind, func.count())
                .where(t.c.status == "ready", t.c.attempts > 0)
                .group_by(t.c.kind)
            )
        )
        failed = c.execute(
            select(t.c.kind, t.c.failure_class, func.count())
            .where(t.c.status == "failed")
            .group_by(t.c.kind, t.c.failure_class)
        ).all()
        decay = _pairs(c.execute(select(d.c.state, func.count()).group_by(d.c.state)))
        decay_expired = c.execute(
            select(func.count()).where(d.c.state == "in_progress", d.c.locked_until_ms < now_ms)
        ).scalar_one()
    kinds = sorted({row.kind for row in by_status})
    stats = []
    for kind in kinds:
        failed_by_class: dict[str, int] = {}
        for row in failed:
            if row.kind == kind:
                key = row.failure_class or "unknown"
                failed_by_class[key] = failed_by_class.get(key, 0) + int(row[2])
        stats.append(
            KindStats(
                kind=kind,
                by_status={row.status: int(row[2]) for row in by_status if row.kind == kind},
                oldest_ready_age_ms=None if kind not in oldest else now_ms - int(oldest[kind]),
                expired_leases=int(expired.get(kind, 0)),
                waiting_retry=int(retrying.get(kind, 0)),
                failed_by_class=failed_by_class,
            )
        )
    return QueueStats(
        kinds=tuple(stats),
        decay_by_state={str(k): int(v) for k, v in decay.items()},
        decay_expired_leases=int(decay_expired),
    )


__all__ = ["KindStats", "QueueStats", "queue_stats"]
