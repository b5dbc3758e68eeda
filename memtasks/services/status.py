"""What an operator (``memtasks status``) and the metrics exporter look at."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from memtasks.domain.clock import HOUR_MS, Clock, system_clock
from memtasks.storage.budget_repo import BudgetRepo, Spend
from memtasks.storage.consolidation_repo import ConsolidationRepo, RunRecord
from memtasks.storage.memory_tables import mem_tree_summaries
from memtasks.storage.retrieval_repo import RetrievalFailures
from memtasks.storage.rows import reading
from memtasks.storage.stats_repo import QueueStats, queue_stats
from memtasks.storage.sweeps_repo import SweepRecord, Sweeps
from memtasks.storage.table_health import StorageHealth, storage_health


@dataclass(frozen=True, slots=True)
class StatusReport:
    """``last_consolidation`` is the newest run that consolidated (outcome ``ran``): a dry
    run, a skip at a gate or a failure never stands for one. ``consolidation_runs_by_outcome``
    counts the ledger's rows under every outcome (0 when none)."""

    now_ms: int
    queue: QueueStats
    last_consolidation: RunRecord | None
    consolidation_runs_by_outcome: dict[str, int]
    sweeps: tuple[SweepRecord, ...]
    retrieval_failures_total: int
    retrieval_failures_last_24h: int
    summaries_by_level: dict[int, int]
    storage: StorageHealth | None
    """PostgreSQL only: the job tables' size, dead rows, last vacuum; whether autovacuum runs."""
    llm_spend: tuple[Spend, ...] = ()
    """Each LLM budget scope's newest period: spent, jobs, estimate, reserved in flight."""


def status_report(engine: Engine, clock: Clock = system_clock) -> StatusReport:
    now = clock()
    ledger = ConsolidationRepo(engine)
    failures = RetrievalFailures(engine, clock=clock)
    with reading(engine) as c:
        levels = {
            int(level): int(count)
            for level, count in c.execute(
                select(mem_tree_summaries.c.level, func.count()).group_by(mem_tree_summaries.c.level)
            )
        }
    return StatusReport(
        now_ms=now,
        queue=queue_stats(engine, now),
        last_consolidation=ledger.last_run(),
        consolidation_runs_by_outcome={o.value: n for o, n in ledger.count_by_outcome().items()},
        sweeps=tuple(Sweeps(engine, clock=clock).all()),
        retrieval_failures_total=failures.count(),
        retrieval_failures_last_24h=failures.count(since_ms=now - 24 * HOUR_MS),
        summaries_by_level=levels,
        storage=storage_health(engine),
        llm_spend=newest_spend(BudgetRepo(engine, clock=clock).spend(since_ms=now - SPEND_LOOKBACK_MS)),
    )


SPEND_LOOKBACK_MS = 400 * 24 * HOUR_MS
"""How far back the status looks for a scope's newest period (a year's period and more)."""


def newest_spend(rows: list[Spend]) -> tuple[Spend, ...]:
    """Of each scope, its newest period only (``rows`` newest first)."""
    seen: dict[str, Spend] = {}
    for row in rows:
        seen.setdefault(row.scope, row)
    return tuple(seen[scope] for scope in sorted(seen))


__all__ = ["StatusReport", "status_report"]
