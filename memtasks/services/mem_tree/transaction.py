"""A claimed memory-tree job's one transaction: handler → follow-ups → fenced settle.

A handler's writes, the follow-up jobs it enqueues and the job's settle share one
transaction. The settle is fenced by the claim's lease token: when the lease was lost
(the job was recovered and claimed again elsewhere) the settle changes no row, and the
whole transaction — every write of the handler — rolls back. A handler that raises rolls
back the same way; the job is then settled ``failed``: unrecoverable for input that can
never succeed (:class:`~memtasks.domain.errors.ValidationError`), transient otherwise (it
comes back after its backoff until its attempts are spent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, Engine

from memtasks.domain.clock import Clock
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import FailureClass
from memtasks.domain.text_models import TextModels
from memtasks.domain.tree import TreeConfig
from memtasks.services.lease_keeper import LeaseWatch
from memtasks.services.mem_tree.context import Defer, Followup, HandlerContext
from memtasks.services.mem_tree.registry import HandlerRegistry
from memtasks.storage.lock_wait import is_lock_timeout
from memtasks.storage.mem_tree_queue import Job, MemTreeJobs
from memtasks.storage.tree_repo import TreeStore

log = logging.getLogger("memtasks.mem_tree")

MAX_ERROR_CHARS = 2_000


class Outcome(StrEnum):
    DONE = "done"
    DEFERRED = "deferred"
    RETRY = "retry"
    FAILED = "failed"
    FENCED = "fenced"
    WAITING = "waiting_for_permit"
    """Not claimed: no LLM permit was free; the job's due time moved a little ahead."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did. ``followups`` are the ids of the jobs its commit enqueued."""

    job_id: str
    kind: str
    outcome: Outcome
    attempts: int
    followups: tuple[Followup, ...] = ()
    error: str | None = None
    retry_at_ms: int | None = None


class _Fenced(Exception):
    """The settle found the lease gone: roll the transaction back."""


class _HandlerRaised(Exception):
    """A handler raised in a batch's fast path: run the batch again with savepoints."""


@dataclass(slots=True)
class Transactions:
    """Runs claimed jobs with the registry's handlers, each settled in its own transaction
    (or a batch in one)."""

    engine: Engine
    jobs: MemTreeJobs
    registry: HandlerRegistry
    models: TextModels
    config: TreeConfig
    clock: Clock
    store: TreeStore
    publishes_followups: bool = False

    def run(self, job: Job, watch: LeaseWatch | None = None) -> RunResult:
        """Run a job this process has claimed, and settle it under its lease.

        The transaction begins when the handler first uses ``ctx.conn``; a handler that never
        does (it wrote nothing) has its job settled by one statement on its own.
        """
        spec = self.registry[job.job_kind]
        watch = watch or LeaseWatch()
        try:
            with ExitStack() as transaction:
                ctx = self._context(lambda: transaction.enter_context(self.engine.begin()), job, watch)
                try:
                    decision = spec.handler(ctx, job.payload())
                finally:
                    watch.settling()
                result = self._settle(ctx.opened, job, decision, tuple(ctx.followups))
        except _Fenced:
            log.warning("memtasks.mem_tree: job %s lost its lease; its writes were rolled back", job.id)
            return RunResult(job.id, job.kind, Outcome.FENCED, job.attempts)
        except Exception as exc:
            return self._fail(job, exc)
        return result

    def run_batch(self, jobs: Sequence[Job], watch: LeaseWatch | None = None) -> list[RunResult]:
        """Run claimed jobs in one transaction and settle them together: one commit per batch.

        The fast path runs every handler straight in the transaction. When one raises, the
        whole transaction rolls back and the batch runs again with a savepoint per handler,
        so only the raising handler's writes are undone; its job is settled failed after the
        commit. When any lease of the batch was lost, the batch rolls back and every job runs
        on its own, fenced one by one.
        """
        if not jobs:
            return []
        watch = watch or LeaseWatch()
        try:
            try:
                return self._batch(jobs, watch, savepoints=False)
            except _HandlerRaised:
                return self._batch(jobs, watch, savepoints=True)
        except _Fenced:
            log.warning("memtasks.mem_tree: a batch of %d lost a lease; runs its jobs one by one", len(jobs))
            return [self.run(job, watch) for job in jobs]

    def _batch(self, jobs: Sequence[Job], watch: LeaseWatch, *, savepoints: bool) -> list[RunResult]:
        results: list[RunResult] = []
        failures: list[tuple[Job, Exception]] = []
        with ExitStack() as transaction:
            opened: list[Connection] = []

            def begin() -> Connection:
                if not opened:
                    opened.append(transaction.enter_context(self.engine.begin()))
                return opened[0]

            done: list[tuple[Job, tuple[Followup, ...]]] = []
            for job in jobs:
                ctx = self._context(begin, job, watch)
                handler = self.registry[job.job_kind].handler
                try:
                    if savepoints:
                        with ctx.conn.begin_nested():
                            decision = handler(ctx, job.payload())
                    else:
                        decision = handler(ctx, job.payload())
                except Exception as exc:
                    if not savepoints:
                        raise _HandlerRaised from exc
                    failures.append((job, exc))
                    continue
                if decision is None:
                    done.append((job, tuple(ctx.followups)))
                else:
                    results.append(self._settle(begin(), job, decision, tuple(ctx.followups)))
            conn = opened[0] if opened else None
            watch.settling()
            if self.jobs.settle_done_many([job.lease for job, _ in done], conn=conn) != len(done):
                raise _Fenced
            results += [RunResult(j.id, j.kind, Outcome.DONE, j.attempts, f) for j, f in done]
        return results + [self._fail(job, exc) for job, exc in failures]

    def _context(self, begin: Callable[[], Connection], job: Job, watch: LeaseWatch) -> HandlerContext:
        return HandlerContext(
            lease=watch,
            job=job,
            store=self.store,
            models=self.models,
            config=self.config,
            clock=self.clock,
            queue=self.jobs,
            begin=begin,
            publishes_followups=self.publishes_followups,
        )

    def _settle(
        self, conn: Connection | None, job: Job, decision: Defer | None, followups: tuple[Followup, ...]
    ) -> RunResult:
        if isinstance(decision, Defer):
            deferred = self.jobs.settle_deferred(
                job.lease, decision.until_ms, reason=decision.reason, conn=conn
            )
            if deferred is None:
                raise _Fenced
            if deferred.terminal:
                return RunResult(job.id, job.kind, Outcome.FAILED, deferred.attempts, error=decision.reason)
            return RunResult(
                job.id,
                job.kind,
                Outcome.DEFERRED,
                deferred.attempts,
                followups,
                retry_at_ms=deferred.retry_at_ms,
            )
        if not self.jobs.settle_done(job.lease, conn=conn):
            raise _Fenced
        return RunResult(job.id, job.kind, Outcome.DONE, job.attempts, followups)

    def _fail(self, job: Job, exc: Exception) -> RunResult:
        if is_lock_timeout(exc):
            return self._lock_wait(job, exc)
        if isinstance(exc, ValidationError):
            failure_class, reason = FailureClass.UNRECOVERABLE, exc.code
        else:
            failure_class, reason = FailureClass.TRANSIENT, None
        message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        outcome = self.jobs.settle_failed(job.lease, message, failure_class, reason=reason)
        if outcome is None:
            log.warning("memtasks.mem_tree: job %s failed after losing its lease: %s", job.id, message)
            return RunResult(job.id, job.kind, Outcome.FENCED, job.attempts, error=message)
        log.log(
            logging.ERROR if outcome.terminal else logging.WARNING,
            "memtasks.mem_tree: job %s (%s) attempt %d failed (%s): %s",
            job.id,
            job.kind,
            outcome.attempts,
            "terminal" if outcome.terminal else "will retry",
            message,
            exc_info=failure_class is FailureClass.TRANSIENT,
        )
        return RunResult(
            job.id,
            job.kind,
            Outcome.FAILED if outcome.terminal else Outcome.RETRY,
            outcome.attempts,
            error=message,
            retry_at_ms=outcome.retry_at_ms,
        )

    def _lock_wait(self, job: Job, exc: Exception) -> RunResult:
        """A row the handler needed was locked past ``lock_timeout`` by another transaction —
        maybe a lost host's that the server has not ended yet. Waiting longer would hold this
        worker up; the job steps aside instead, its attempt refunded, and comes back shortly."""
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:MAX_ERROR_CHARS]
        deferred = self.jobs.defer_lock_wait(job.lease, message)
        if deferred is None:
            log.warning("memtasks.mem_tree: job %s met a lock after losing its lease", job.id)
            return RunResult(job.id, job.kind, Outcome.FENCED, job.attempts, error=message)
        statement = " ".join(str(getattr(exc, "statement", "") or "").split())[:300]
        log.warning(
            "memtasks.mem_tree: job %s (%s) met a row lock held by another transaction; "
            "deferred to %s, attempt refunded%s",
            job.id,
            job.kind,
            deferred.retry_at_ms,
            f" (waiting in: {statement})" if statement else "",
        )
        if deferred.terminal:
            return RunResult(job.id, job.kind, Outcome.FAILED, deferred.attempts, error=message)
        return RunResult(
            job.id,
            job.kind,
            Outcome.DEFERRED,
            deferred.attempts,
            error=message,
            retry_at_ms=deferred.retry_at_ms,
        )


__all__ = ["Outcome", "RunResult", "Transactions"]
