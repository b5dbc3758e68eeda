"""Build the storage objects a process needs from one :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Engine

from memtasks.config import Settings
from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import SECOND_MS, Clock
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.gates import ConsolidationConfig
from memtasks.domain.tree import TreeConfig
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import EngineOptions, dispose_all, get_engine, mask_url
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.migrate import current_revision, head_revision, is_known_revision
from memtasks.storage.queue import QueueConfig


def engine_options(
    settings: Settings, *, read_only: bool = False, migrate: bool | None = None, create: bool | None = None
) -> EngineOptions:
    """The engine options of ``settings``. ``migrate``: None — as ``MEMTASKS_AUTO_MIGRATE`` says;
    False — never migrate, nor create a SQLite file unless ``create`` (``memtasks db upgrade``)."""
    migrating = settings.auto_migrate if migrate is None else migrate
    return EngineOptions(
        busy_timeout_s=settings.sqlite_busy_timeout_s,
        journal_mode=settings.sqlite_journal_mode,
        pool_size=settings.pool_size,
        auto_migrate=migrating and not read_only,
        breaker_threshold=settings.breaker_threshold,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        read_only=read_only,
        create=(migrate is None or migrate) if create is None else create,
        lock_timeout_s=settings.db_lock_timeout_s,
        idle_in_transaction_s=settings.db_idle_in_transaction_s or settings.lease_s,
        dead_peer_s=settings.db_dead_peer_s,
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
        archive_grace_days=settings.archive_grace_days,
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


def open_runtime(
    settings: Settings, *, clock: Clock | None = None, read_only: bool = False, migrate: bool | None = None
) -> Runtime:
    """Open (or reuse) the engine for the configured database and wrap it in repositories.

    ``clock``: None (production) — the database's clock, for every host alike.
    ``read_only``: reads only (see :class:`EngineOptions`); the schema must be at the newest
    revision. ``migrate``: None — as ``MEMTASKS_AUTO_MIGRATE`` says (workers, the producer);
    False — create and migrate nothing, and require the schema at the newest revision (the
    ``memtasks`` commands other than ``db upgrade``): :class:`ConfigurationError` saying
    "run `memtasks db upgrade`" otherwise.
    """
    url = settings.resolved_database_url
    engine = get_engine(url, engine_options(settings, read_only=read_only, migrate=migrate))
    if read_only or migrate is False:
        require_head(engine, url)
    config = queue_config(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        jobs=MemTreeJobs(engine, config=config, clock=clock),
        decay=DecayJobs(
            engine, config=replace(config, max_attempts=settings.decay_max_attempts), clock=clock
        ),
    )


def require_head(engine: Engine, url: str) -> None:
    """:class:`ConfigurationError` unless the schema is at the newest revision this code ships:
    an empty database or one behind says "run `memtasks db upgrade`"."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if current is not None and not is_known_revision(current):
        raise ConfigurationError(
            f"the database {mask_url(url)} is at revision {current}, newer than this memtasks "
            f"knows (it needs {head}) — upgrade memtasks"
        )
    raise ConfigurationError(
        f"the database {mask_url(url)} is at revision {current or 'none (no memtasks tables)'}, "
        f"this memtasks needs {head} — run `memtasks db upgrade`"
    )


def dispose_engines() -> None:
    """Drop every engine of this process (a forked child must not use its parent's sockets)."""
    dispose_all()
