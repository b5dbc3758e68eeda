"""Build the storage objects a process needs from one :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Engine

from memtasks.config import Settings
from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import SECOND_MS, Clock
from memtasks.domain.gates import ConsolidationConfig
from memtasks.domain.tree import TreeConfig
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import EngineOptions, dispose_all, get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue import QueueConfig


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        busy_timeout_s=settings.sqlite_busy_timeout_s,
        journal_mode=settings.sqlite_journal_mode,
        pool_size=settings.pool_size,
        auto_migrate=settings.auto_migrate,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_s,
    )


def queue_config(settings: Settings) -> QueueConfig:
    return QueueConfig(
        lease_ms=int(settings.lease_s * SECOND_MS),
        policy=RetryPolicy(
            base_ms=int(settings.backoff_base_s * SECOND_MS),
            cap_ms=int(settings.backoff_cap_s * SECOND_MS),
            jitter=settings.backoff_jitter,
        ),
        max_attempts=settings.max_attempts,
        defer_max_age_ms=int(settings.defer_max_age_s * SECOND_MS),
    )


def consolidation_config(settings: Settings) -> ConsolidationConfig:
    return ConsolidationConfig(
        min_hours=settings.consolidate_min_hours,
        min_sessions=settings.consolidate_min_sessions,
        max_message_age_days=settings.consolidate_max_message_age_days,
        max_outcomes_per_sender=settings.consolidate_max_outcomes_per_sender,
        delete_batch_size=settings.consolidate_batch_size,
    )


def tree_config(settings: Settings) -> TreeConfig:
    return TreeConfig(
        fanout=settings.tree_fanout,
        stale_after_ms=int(settings.tree_stale_after_s * SECOND_MS),
        reembed_batch=settings.tree_reembed_batch,
    )


@dataclass(frozen=True, slots=True)
class Runtime:
    """The engine and repositories of one process, built from its settings."""

    settings: Settings
    engine: Engine
    jobs: MemTreeJobs
    decay: DecayJobs


def open_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    """Open (or reuse) the engine for the configured database and wrap it in repositories.

    ``clock``: None (production) — the database's clock, for every host alike.
    """
    engine = get_engine(settings.resolved_database_url, engine_options(settings))
    config = queue_config(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        jobs=MemTreeJobs(engine, config=config, clock=clock),
        decay=DecayJobs(
            engine, config=replace(config, max_attempts=settings.decay_max_attempts), clock=clock
        ),
    )


def dispose_engines() -> None:
    """Drop every engine of this process (a forked child must not use its parent's sockets)."""
    dispose_all()
