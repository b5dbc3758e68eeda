"""What the periodic sweeps do, for both job tables. No Celery, no locks here: the sweep
registry (:mod:`memtasks.services.sweeps`) decides when each runs and guards its ticks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from memtasks.domain.clock import DAY_MS, SECOND_MS
from memtasks.domain.jobs import JobKind
from memtasks.domain.tree import flush_stale_job
from memtasks.locks import RedisLockGate, redis_client
from memtasks.services.consolidation import DEFAULT_LOCK_NAME, Consolidator
from memtasks.services.mem_tree.context import Followup
from memtasks.services.publishing import DecayMessage, Publisher, publish_or_forget
from memtasks.services.retrieval_failures import purge_retrieval_failures
from memtasks.services.runtime import Runtime, consolidation_config
from memtasks.storage.archive_repo import ArchiveRepo
from memtasks.storage.budget_repo import BudgetRepo
from memtasks.storage.decay_queue import DecayJob

log = logging.getLogger("memtasks.maintenance")

DISPATCH_ROUNDS = 10


def consolidator_for(runtime: Runtime, lock_client: redis.Redis | None = None) -> Consolidator:
    """The consolidator of ``runtime``'s database and settings, its lock gate on the lock Redis."""
    settings = runtime.settings
    client = redis_client(settings.lock_redis_url) if lock_client is None else lock_client
    gate = RedisLockGate(client, DEFAULT_LOCK_NAME, ttl_s=settings.consolidate_lock_ttl_s)
    return Consolidator(runtime.engine, gate, consolidation_config(settings), runtime.jobs.clock)


def decay_message(job: DecayJob) -> DecayMessage:
    return DecayMessage(job.id, job.kind, job.needs_operator)


@dataclass(slots=True)
class Maintenance:
    runtime: Runtime
    publisher: Publisher
    lock_client: redis.Redis

    def dispatch_due(self) -> dict[str, int]:
        """Publish due rows that have no live message (never published, or lost)."""
        settings = self.runtime.settings
        redispatch_after = int(settings.redispatch_after_s * SECOND_MS)
        batch = settings.dispatch_batch
        published = {"mem_tree": 0, "decay": 0}
        jobs, decay = self.runtime.jobs, self.runtime.decay
        for _ in range(DISPATCH_ROUNDS):
            rows = jobs.mark_for_dispatch(batch, redispatch_after_ms=redispatch_after)
            self.publish_mem_tree([Followup(r.id, r.kind) for r in rows])
            published["mem_tree"] += len(rows)
            if len(rows) < batch:
                break
        for _ in range(DISPATCH_ROUNDS):
            decay_rows = decay.mark_for_dispatch(batch, redispatch_after_ms=redispatch_after)
            self.publish_decay([decay_message(r) for r in decay_rows])
            published["decay"] += len(decay_rows)
            if len(decay_rows) < batch:
                break
        return published

    def publish_mem_tree(self, jobs: list[Followup]) -> None:
        publish_or_forget(self.publisher.mem_tree, self.runtime.jobs.forget_dispatch, jobs)

    def publish_decay(self, jobs: list[DecayMessage]) -> None:
        publish_or_forget(self.publisher.decay, self.runtime.decay.forget_dispatch, jobs)

    def recover(self) -> dict[str, int]:
        """Expired leases of both tables back to ready (or failed), then publish them at once."""
        results = [self.runtime.jobs.recover_expired(), self.runtime.decay.recover_expired()]
        # Reservations of LLM-bound jobs whose worker died before settling: past their expiry
        # they count no more; here they are deleted.
        BudgetRepo(self.runtime.engine, clock=self.runtime.jobs.clock).drop_expired()
        requeued = sum(len(r.requeued) for r in results)
        dispatched = self.dispatch_due() if requeued else {}
        return {
            "requeued": requeued,
            "failed": sum(len(r.failed) for r in results),
            "dispatched": sum(dispatched.values()),
        }

    def flush_stale(self) -> str | None:
        job_id = self.runtime.jobs.enqueue(flush_stale_job(self.runtime.jobs.clock()), published=True)
        if job_id is not None:
            self.publish_mem_tree([Followup(job_id, JobKind.FLUSH_STALE.value)])
        return job_id

    def self_heal(self) -> int:
        """Transient failures of both tables back to ready with fresh attempts (unrecoverable
        ones stay), then published."""
        healed = sum(
            q.admin.requeue_failed(transient_only=True) for q in (self.runtime.jobs, self.runtime.decay)
        )
        if healed:
            self.dispatch_due()
        return healed

    def prune_finished(self) -> int:
        """Finished jobs past retention into the archive (deleted at once with a grace of 0)."""
        settings = self.runtime.settings
        retention, archive = int(settings.retention_days * DAY_MS), settings.archive_grace_days > 0
        return sum(
            q.admin.prune_finished(retention, archive=archive)
            for q in (self.runtime.jobs, self.runtime.decay)
        )

    def purge_archive(self) -> dict[str, int]:
        """Archived rows past ``MEMTASKS_ARCHIVE_GRACE_DAYS``, deleted in bounded batches."""
        grace = int(self.runtime.settings.archive_grace_days * DAY_MS)
        return ArchiveRepo(self.runtime.engine, clock=self.runtime.jobs.clock).purge(grace)

    def purge_retrieval_failures(self) -> int:
        retention = int(self.runtime.settings.retrieval_failure_retention_days * DAY_MS)
        return purge_retrieval_failures(self.runtime.engine, retention, self.runtime.jobs.clock)

    def purge_retired(self) -> int:
        return self.runtime.jobs.purge_retired()

    def consolidate(self) -> dict[str, Any]:
        """One consolidation tick through its own gates (lock, time, session): every tick —
        run, skipped at a gate, failed — leaves its row in the consolidation ledger."""
        report = consolidator_for(self.runtime, self.lock_client).maybe_run("schedule")
        return {
            "outcome": report.outcome.value,
            "messages_pruned": report.messages_pruned,
            "outcomes_pruned": report.outcomes_pruned,
        }


__all__ = ["Maintenance", "consolidator_for", "decay_message"]
