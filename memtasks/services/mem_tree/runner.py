"""Run memory-tree jobs: the one orchestration that workers and tests share.

``run_by_id`` is what a run message does: take an LLM permit when the kind needs one (or
move the job a little ahead when none is free — it is not claimed, so no lease burns),
claim the row by id, keep its lease alive while the handler runs, settle in the job's
transaction (:mod:`~memtasks.services.mem_tree.transaction`), then publish the follow-ups
the commit enqueued. ``drain_batch`` is what a drain message does: claim many at once and
settle them in one transaction. ``run_next`` and ``drain`` take the most urgent due jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from memtasks.domain.budgets import metering
from memtasks.domain.clock import Clock
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind
from memtasks.domain.text_models import TextModels
from memtasks.domain.tree import TreeConfig
from memtasks.services.budgets import Budgets
from memtasks.services.holding import Holding, Permit
from memtasks.services.mem_tree.context import Followup
from memtasks.services.mem_tree.registry import HandlerRegistry
from memtasks.services.mem_tree.transaction import Outcome, RunResult, Transactions
from memtasks.services.publishing import Publisher, publish_or_forget
from memtasks.storage.mem_tree_queue import Job, MemTreeJobs
from memtasks.storage.tree_repo import TreeStore

log = logging.getLogger("memtasks.mem_tree")

DRAIN_SECONDS = 60.0
"""How long one drain message keeps claiming batches before it hands on to a new message."""


@dataclass(slots=True)
class MemTreeRunner:
    """Runs memory-tree jobs with the registry's handlers.

    ``publisher``: publish each commit's follow-ups at once (None: the dispatch sweep does).
    ``llm``: the text models call an LLM, so LLM-bound kinds hold a permit of ``holding``.
    """

    engine: Engine
    jobs: MemTreeJobs
    registry: HandlerRegistry = field(default_factory=HandlerRegistry.default)
    models: TextModels = field(default_factory=TextModels)
    config: TreeConfig = field(default_factory=TreeConfig)
    clock: Clock | None = None
    store: TreeStore | None = None
    holding: Holding = field(default_factory=Holding)
    publisher: Publisher | None = None
    llm: bool = False
    budgets: Budgets | None = None
    """LLM budgets checked before an LLM-bound job is claimed (None: none set)."""
    _transactions: Transactions | None = None

    @property
    def transactions(self) -> Transactions:
        if self._transactions is None:
            clock = self.jobs.clock if self.clock is None else self.clock
            self._transactions = Transactions(
                self.engine,
                self.jobs,
                self.registry,
                self.models,
                self.config,
                clock,
                self.store or TreeStore(self.engine, clock=clock),
                publishes_followups=self.publisher is not None,
            )
        return self._transactions

    def needs_permit(self, kind: JobKind) -> bool:
        return self.llm and self.registry.llm_bound(kind)

    # ── entry points ─────────────────────────────────────────────────────────

    def run_by_id(self, job_id: str) -> RunResult | None:
        """Claim ``job_id`` and run it; None when it is not claimable (done, running, not due…).

        An LLM-bound job takes a fleet-wide permit first and, with LLM budgets set, room in its
        budgets; without either it is postponed, unclaimed (no attempt spent): a little for a
        permit, to the next period for a budget. A row with an unknown kind or a malformed
        payload is failed as unrecoverable by the claim, which raises the error naming it.
        """
        row = self._llm_row(job_id)
        with self.holding.permit(row is not None) as permit:
            if not permit.granted:
                postponed = self.jobs.postpone(job_id, self.holding.permit_wait_ms)
                log.info("memtasks.mem_tree: %s waits for an LLM permit (postponed: %s)", job_id, postponed)
                return RunResult(job_id, "", Outcome.WAITING, 0)
            budgets = None if row is None else self.budgets
            if budgets is not None and row is not None:
                admission = budgets.admit(job_id, row.fair_key)
                if not admission.granted:
                    self.jobs.postpone(job_id, budgets.defer_ms(admission, self.holding.permit_wait_ms))
                    return RunResult(job_id, "", Outcome.WAITING, 0)
            job = self.jobs.claim(job_id)
            if job is None:
                if budgets is not None:
                    budgets.release(job_id)
                return None
            return self._run_held(job, permit, budgets)

    def _run_held(self, job: Job, permit: Permit, budgets: Budgets | None = None) -> RunResult:
        """Run a claimed job, its lease (and permit) kept alive meanwhile; publish its follow-ups.
        With ``budgets``, what its model calls report is settled against them, whatever the outcome."""
        with self.holding.lease(self.jobs, job.lease, permit) as watch, metering() as meter:
            try:
                result = self.transactions.run(job, watch)
            finally:
                if budgets is not None:
                    budgets.settle(job.id, meter)
        self._publish(result.followups)
        return result

    def _llm_row(self, job_id: str) -> Job | None:
        """The row of ``job_id`` when it is an LLM-bound job that needs a permit, else None."""
        if not self.llm:
            return None
        row = self.jobs.get(job_id)
        if row is None:
            return None
        try:
            return row if self.needs_permit(row.job_kind) else None
        except ValidationError:
            return None  # the claim fails the row and names the kind

    def run_next(self, *, kinds: Sequence[JobKind] | None = None) -> RunResult | None:
        """Claim the most urgent due job and run it; None when nothing is due."""
        needed = self.llm and any(self.needs_permit(k) for k in (kinds or list(JobKind)))
        with self.holding.permit(needed) as permit:
            if not permit.granted:
                return None
            job = self.jobs.claim_next(kinds=kinds)
            if job is None:
                return None
            budgets = self.budgets if self.needs_permit(job.job_kind) else None
            if budgets is not None:
                admission = budgets.admit(job.id, job.fair_key)
                if not admission.granted:
                    # Claimed before its budget could be checked: handed back, the attempt refunded.
                    until = self.jobs.clock() + budgets.defer_ms(admission, self.holding.permit_wait_ms)
                    self.jobs.settle_deferred(job.lease, until, reason=f"llm budget: {admission.verdict}")
                    return RunResult(job.id, job.kind, Outcome.WAITING, job.attempts - 1)
            return self._run_held(job, permit, budgets)

    def drain(self, *, kinds: Sequence[JobKind] | None = None, limit: int | None = None) -> list[RunResult]:
        """Run due jobs one by one until none is left (or ``limit`` ran)."""
        results: list[RunResult] = []
        while limit is None or len(results) < limit:
            result = self.run_next(kinds=kinds)
            if result is None:
                break
            results.append(result)
        return results

    def drain_batch(self, kinds: Sequence[JobKind], limit: int) -> list[RunResult]:
        """Claim up to ``limit`` due jobs of ``kinds`` (SKIP LOCKED), run them in one
        transaction, settle them together, publish their follow-ups. Kinds that need an LLM
        permit are left out: each of those runs on its own, holding its own permit."""
        allowed = [k for k in kinds if not self.needs_permit(k)]
        if not allowed:
            return []
        jobs = self.jobs.claim_batch(limit, kinds=allowed)
        if not jobs:
            return []
        with self.holding.leases(self.jobs, [job.lease for job in jobs]) as watch:
            results = self.transactions.run_batch(jobs, watch)
        self._publish(tuple(f for result in results for f in result.followups))
        return results

    def drain_until_empty(
        self, kinds: Sequence[JobKind], limit: int, *, seconds: float = DRAIN_SECONDS
    ) -> tuple[list[RunResult], bool]:
        """Drain batches of ``limit`` until one comes back short (no due row of ``kinds`` was
        left unclaimed), or ``seconds`` have passed; returns the results and whether it
        emptied the backlog.

        A drain message is not tied to rows: another drain, or a run message's claim, may take
        rows of its burst and leave others of that burst behind — rows whose message was
        already sent, so the dispatch sweep leaves them alone for a while. Draining until a
        claim comes back short leaves no due row behind.
        """
        results: list[RunResult] = []
        deadline = time.monotonic() + seconds
        while True:
            batch = self.drain_batch(kinds, limit)
            results += batch
            if len(batch) < limit:
                return results, True
            if time.monotonic() >= deadline:
                return results, False

    # ── claimed jobs ─────────────────────────────────────────────────────────

    def run(self, job: Job) -> RunResult:
        """Run a job this process has claimed (its lease is the caller's to keep)."""
        return self.transactions.run(job)

    def run_batch(self, jobs: Sequence[Job]) -> list[RunResult]:
        return self.transactions.run_batch(jobs)

    def _publish(self, followups: Sequence[Followup]) -> None:
        if self.publisher is not None:
            publish_or_forget(self.publisher.mem_tree, self.jobs.forget_dispatch, followups)


__all__ = ["MemTreeRunner", "Outcome", "RunResult"]
