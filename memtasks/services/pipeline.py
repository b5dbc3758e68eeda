"""What each Celery task does, without Celery: the worker's tasks are one-line calls here.

The message is a hint, the row is the truth: every run claims its row by id, and a row
that is not claimable (done, running elsewhere, not due, gone) makes the message a no-op
that is logged and acknowledged. Publishing goes through a :class:`Publisher` (the worker
passes a Celery one; tests may pass their own).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import redis

from memtasks.config import Settings
from memtasks.domain.clock import DAY_MS, SECOND_MS
from memtasks.domain.decay import SummaryMethod
from memtasks.domain.errors import ConfigurationError, MemtasksError, ValidationError
from memtasks.domain.jobs import JobKind, JobStatus, Lease
from memtasks.domain.text_models import TextModels
from memtasks.domain.tree import flush_stale_job
from memtasks.domain.wire import parse_kinds
from memtasks.locks import RedisLockGate, RedisSemaphore, redis_client
from memtasks.services import intake
from memtasks.services.consolidation import DEFAULT_LOCK_NAME, Consolidator
from memtasks.services.decay_runner import DecayRunner
from memtasks.services.lease_keeper import LeaseKeeper
from memtasks.services.mem_tree import Followup, HandlerRegistry, MemTreeRunner
from memtasks.services.retrieval_failures import DatabaseSink, purge_retrieval_failures
from memtasks.services.runtime import Runtime, consolidation_config, tree_config
from memtasks.services.sweeps import SweepGate, SweepRun

log = logging.getLogger("memtasks.pipeline")

LLM_PERMITS_KEY = "memtasks:llm-permits"
DISPATCH_ROUNDS = 10


class Publisher(Protocol):
    """Sends the run message of rows that were committed."""

    def mem_tree(self, jobs: Sequence[Followup]) -> None: ...

    def decay(self, job_ids: Sequence[str]) -> None: ...


def load_object(spec: str, what: str) -> Any:
    """``package.module:callable`` → the callable's result; a clear error otherwise."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"{what} must look like 'package.module:callable', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {what} {spec!r}: {exc}") from exc
    return factory()


def handler_registry(settings: Settings) -> HandlerRegistry:
    if settings.handlers is None:
        return HandlerRegistry.default()
    registry = load_object(settings.handlers, "MEMTASKS_HANDLERS")
    if not isinstance(registry, HandlerRegistry):
        raise ConfigurationError(f"MEMTASKS_HANDLERS {settings.handlers!r} did not return a HandlerRegistry")
    return registry


def text_models(settings: Settings) -> TextModels:
    if settings.text_models is None:
        return TextModels()
    models = load_object(settings.text_models, "MEMTASKS_TEXT_MODELS")
    if not isinstance(models, TextModels):
        raise ConfigurationError(f"MEMTASKS_TEXT_MODELS {settings.text_models!r} did not return TextModels")
    return models


@dataclass(slots=True)
class Pipeline:
    """The use cases a worker runs. One per worker process (see ``memtasks.worker.app``)."""

    runtime: Runtime
    publisher: Publisher
    registry: HandlerRegistry = field(default_factory=HandlerRegistry.default)
    models: TextModels = field(default_factory=TextModels)
    _runner: MemTreeRunner | None = None
    _lock_client: redis.Redis | None = None
    _leases: LeaseKeeper | None = None

    @classmethod
    def from_settings(cls, runtime: Runtime, publisher: Publisher) -> Pipeline:
        settings = runtime.settings
        return cls(runtime, publisher, handler_registry(settings), text_models(settings))

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def runner(self) -> MemTreeRunner:
        if self._runner is None:
            self._runner = MemTreeRunner(
                self.runtime.engine,
                self.runtime.jobs,
                registry=self.registry,
                models=self.models,
                config=tree_config(self.settings),
                clock=self.runtime.jobs.clock,
                publishes_followups=True,
            )
        return self._runner

    @property
    def lock_client(self) -> redis.Redis:
        if self._lock_client is None:
            self._lock_client = redis_client(self.settings.lock_redis_url)
        return self._lock_client

    def now(self) -> int:
        return self.runtime.jobs.clock()

    # ── mem-tree jobs ────────────────────────────────────────────────────────

    def run_mem_tree(self, job_id: str) -> dict[str, Any]:
        """Claim ``job_id``, run its handler, settle, publish its follow-ups."""
        jobs = self.runtime.jobs
        permits = self._permits_for(job_id)
        token: str | None = None
        if permits is not None:
            token = permits.acquire()
            if token is None:
                until = self.now() + int(self.settings.llm_wait_s * SECOND_MS)
                postponed = jobs.postpone(job_id, until)
                log.info("memtasks.pipeline: %s waits for an LLM permit (postponed: %s)", job_id, postponed)
                return {"job_id": job_id, "outcome": "waiting_for_permit"}
        try:
            try:
                job = jobs.claim(job_id)
            except ValidationError as exc:
                log.error("memtasks.pipeline: job %.100r failed as unrecoverable at claim: %s", job_id, exc)
                return {"job_id": job_id, "outcome": "failed", "error": str(exc)}
            if job is None:
                log.info("memtasks.pipeline: job %.100r is not claimable now; message dropped", job_id)
                return {"job_id": job_id, "outcome": "not_claimable"}
            with self._holding(job.lease, permits, token):
                result = self.runner.run(job)
        finally:
            if permits is not None and token is not None:
                permits.release(token)
        if result.followups:
            self._publish(list(result.followups))
        return {
            "job_id": job_id,
            "kind": result.kind,
            "outcome": result.outcome.value,
            "attempts": result.attempts,
            "followups": len(result.followups),
            **({"error": result.error} if result.error else {}),
        }

    def drain(self, kinds: Sequence[str], limit: int) -> dict[str, Any]:
        """Claim up to ``limit`` due jobs of ``kinds`` (SKIP LOCKED), run them in one
        transaction, settle them together, publish their follow-ups."""
        job_kinds = parse_kinds(kinds)
        jobs = self.runtime.jobs.claim_batch(limit, kinds=job_kinds)
        if not jobs:
            return {"claimed": 0}
        with ExitStack() as held:
            for job in jobs:
                held.enter_context(self.leases.holding(job.lease))
            results = self.runner.run_batch(jobs)
        followups = [f for result in results for f in result.followups]
        if followups:
            self._publish(followups)
        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        return {"claimed": len(jobs), **outcomes}

    def _permits_for(self, job_id: str) -> RedisSemaphore | None:
        """The LLM permits when this job needs one (LLM-bound kind, text models call an LLM)."""
        if not self.settings.tree_uses_llm:
            return None
        row = self.runtime.jobs.get(job_id)
        if row is None or row.status is not JobStatus.READY:
            return None
        try:
            bound = self.registry.llm_bound(row.job_kind)
        except ValidationError:
            return None  # the claim fails the row and names the kind
        if not bound:
            return None
        return RedisSemaphore(
            self.lock_client,
            LLM_PERMITS_KEY,
            limit=self.settings.llm_permits,
            ttl_s=self.settings.llm_permit_ttl_s,
        )

    @property
    def leases(self) -> LeaseKeeper:
        """The heartbeat of every lease this process holds (one thread, started on first use)."""
        if self._leases is None:
            jobs = self.runtime.jobs
            self._leases = LeaseKeeper(jobs.heartbeat, max(0.05, self.settings.lease_s / 3))
        return self._leases

    def _holding(
        self, lease: Lease, permits: RedisSemaphore | None, token: str | None
    ) -> AbstractContextManager[None]:
        """Heartbeat the lease (and renew the permit) while the job runs."""
        renew = None if permits is None or token is None else partial(permits.renew, token)
        return self.leases.holding(lease, renew)

    def release_held(self) -> int:
        """Graceful shutdown: hand back the leases of jobs still running here (attempt refunded)."""
        leases = self.leases.take_all()
        if not leases:
            return 0
        released = self.runtime.jobs.release(leases)
        log.warning("memtasks.pipeline: released %d held leases at shutdown", released)
        return released

    def enqueue_mem_tree(
        self,
        kind: str,
        payload: Mapping[str, Any],
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        """Remote enqueue for producers without database access: insert (deduped), publish.

        The input is checked by :mod:`memtasks.services.intake` with the producer API's rules.
        """
        job = intake.mem_tree_job_from_wire(
            kind, payload, dedupe_key, delay_s, max_attempts, now_ms=self.now()
        )
        job_id = self.runtime.jobs.enqueue(job, published=True)
        if job_id is not None and job.available_at_ms is None:
            self._publish([Followup(job_id, job.kind.value)])
        return {"job_id": job_id, "deduped": job_id is None}

    def _publish(self, jobs: list[Followup]) -> None:
        try:
            self.publisher.mem_tree(jobs)
        except Exception:
            # The rows are committed: the next dispatch sweep publishes them.
            self.runtime.jobs.forget_dispatch([j.job_id for j in jobs])
            raise

    # ── decay jobs ───────────────────────────────────────────────────────────

    def run_decay(self, job_id: str) -> dict[str, Any]:
        """Run a deterministic decay job by id; LLM-summary jobs are left to an operator."""
        decay = self.runtime.decay
        job = decay.get(job_id)
        if job is None:
            log.error("memtasks.pipeline: decay job %.100r does not exist; message dropped", job_id)
            return {"job_id": job_id, "outcome": "not_found"}
        if job.summary_method == SummaryMethod.LLM_SUMMARY.value:
            log.warning(
                "memtasks.pipeline: decay job %s is an LLM summary: it runs only with "
                "`memtasks decay run %s --attestation FILE`",
                job_id,
                job_id,
            )
            return {"job_id": job_id, "outcome": "needs_operator"}
        runner = DecayRunner(self.runtime.engine, decay)
        try:
            outcome = runner.run_by_id(job_id)
        except MemtasksError as exc:
            log.error("memtasks.pipeline: decay job %s: %s", job_id, exc)
            return {"job_id": job_id, "outcome": "failed", "error": str(exc)}
        return {"job_id": job_id, "outcome": outcome.state.value if outcome.ran else "not_claimable"}

    def enqueue_decay(
        self,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = SummaryMethod.DETERMINISTIC_CONCATENATE.value,
        delay_s: float | None = None,
    ) -> dict[str, Any]:
        """Remote decay enqueue, checked with the producer API's rules (:mod:`~memtasks.services.intake`).

        An LLM-summary job is inserted and never published: an operator runs it.
        """
        request = intake.decay_job_from_wire(kind, source_ids, created_by, method, delay_s, now_ms=self.now())
        spec, scheduled = request.spec, request.scheduled_for_ms
        publish = scheduled is None and spec.method is not SummaryMethod.LLM_SUMMARY
        job_id = self.runtime.decay.enqueue(
            spec, created_by=request.created_by, scheduled_for_ms=scheduled, published=publish
        )
        if publish:
            self.publisher.decay([job_id])
        return {"job_id": job_id}

    # ── retrieval failures ───────────────────────────────────────────────────

    def record_retrieval_failures(self, batch: Sequence[object]) -> dict[str, int]:
        """Write a batch sent by the Celery sink; invalid records are logged and counted.

        Checked by :func:`memtasks.services.intake.retrieval_failure_batch`, as the producer's
        sink checks it; a batch that is no list or too long is refused whole (ValidationError).
        """
        checked = intake.retrieval_failure_batch(batch)
        for reason in checked.rejected:
            log.error("memtasks.pipeline: retrieval-failure record rejected: %s", reason)
        now = self.now()
        records = [record.stamped(now) for record in checked.records]
        if records:
            DatabaseSink(self.runtime.engine, clock=self.runtime.jobs.clock).write(records)
        return {"written": len(records), "rejected": len(checked.rejected)}

    # ── sweeps ───────────────────────────────────────────────────────────────

    def sweep(self, name: str, interval_s: float) -> SweepRun:
        """Run sweep ``name`` once for the current slot of ``interval_s`` (lock + slot guard)."""
        work = {
            "consolidate": self.consolidate,
            "recover": self.recover,
            "dispatch_due": self.dispatch_due,
            "flush_stale": self.enqueue_flush_stale,
            "self_heal": self.self_heal,
            "prune_finished": self.prune_finished,
            "purge_retrieval_failures": self.purge_retrieval_failures,
            "purge_retired": self.purge_retired,
        }[name]
        run = SweepGate(self.runtime.engine, self.lock_client, clock=self.runtime.jobs.clock).run(
            name, interval_s, work
        )
        if not run.ran:
            log.debug("memtasks.pipeline: sweep %s skipped: %s", name, run.skipped_because)
        return run

    def dispatch_due(self) -> dict[str, int]:
        """Publish due rows that have no live message (never published, or lost)."""
        redispatch_after = int(self.settings.redispatch_after_s * SECOND_MS)
        batch = self.settings.dispatch_batch
        published = 0
        for _ in range(DISPATCH_ROUNDS):
            rows = self.runtime.jobs.mark_for_dispatch(batch, redispatch_after_ms=redispatch_after)
            if rows:
                self._publish([Followup(r.id, r.kind) for r in rows])
            published += len(rows)
            if len(rows) < batch:
                break
        decay_ids = self.runtime.decay.mark_for_dispatch(batch, redispatch_after_ms=redispatch_after)
        if decay_ids:
            self.publisher.decay(decay_ids)
        return {"mem_tree": published, "decay": len(decay_ids)}

    def recover(self) -> dict[str, int]:
        """Expired leases back to ready (or failed), then publish them at once."""
        mem_tree = self.runtime.jobs.recover_expired()
        decay_requeued, decay_failed = self.runtime.decay.recover_expired()
        dispatched = self.dispatch_due() if mem_tree.requeued or decay_requeued else {}
        return {
            "requeued": len(mem_tree.requeued) + len(decay_requeued),
            "failed": len(mem_tree.failed) + len(decay_failed),
            "dispatched": sum(dispatched.values()),
        }

    def enqueue_flush_stale(self) -> str | None:
        job_id = self.runtime.jobs.enqueue(flush_stale_job(self.now()), published=True)
        if job_id is not None:
            self._publish([Followup(job_id, JobKind.FLUSH_STALE.value)])
        return job_id

    def self_heal(self) -> int:
        """Transient failures back to ready with fresh attempts (unrecoverable ones stay)."""
        healed = self.runtime.jobs.requeue_failed(transient_only=True)
        if healed:
            self.dispatch_due()
        return healed

    def prune_finished(self) -> int:
        retention = int(self.settings.retention_days * DAY_MS)
        return self.runtime.jobs.prune_finished(retention)

    def purge_retrieval_failures(self) -> int:
        retention = int(self.settings.retrieval_failure_retention_days * DAY_MS)
        return purge_retrieval_failures(self.runtime.engine, retention, self.runtime.jobs.clock)

    def purge_retired(self) -> int:
        return self.runtime.jobs.purge_retired()

    def consolidate(self) -> dict[str, Any]:
        gate = RedisLockGate(self.lock_client, DEFAULT_LOCK_NAME, ttl_s=self.settings.consolidate_lock_ttl_s)
        report = Consolidator(
            self.runtime.engine, gate, consolidation_config(self.settings), self.runtime.jobs.clock
        ).maybe_run("schedule")
        return {
            "outcome": report.outcome.value,
            "messages_pruned": report.messages_pruned,
            "outcomes_pruned": report.outcomes_pruned,
        }


__all__ = ["Pipeline", "Publisher", "handler_registry", "load_object", "text_models"]
