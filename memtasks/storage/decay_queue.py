"""The decay job table on the queue engine: pending → in_progress → completed | failed | cancelled.

Claims, leases, settles, retries with backoff, recovery and dispatch are the engine's
(``memtasks.storage.queue``), as for memory-tree jobs. This adapter adds what only
``decay_jobs`` knows: a new row from a :class:`~memtasks.domain.decay.DecaySpec`, the seed's
claim by id for an operator (not found, in progress, malformed → a validation error with
its code; terminal → a no-op), the result memory of a completed job, and the operator's
attestation that hands an LLM summary to the fleet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from memtasks.domain.clock import MAX_TIMESTAMP_MS, Clock
from memtasks.domain.decay import (
    CODE_IN_PROGRESS,
    CODE_MALFORMED,
    DecaySpec,
    DecayState,
    SummaryMethod,
    check_created_by,
    check_scheduled_for_ms,
    failure_reason,
)
from memtasks.domain.errors import ValidationError
from memtasks.domain.ids import check_decay_job_id, new_decay_job_id
from memtasks.domain.jobs import FailureClass, Lease
from memtasks.storage.queue import DECAY, FailureOutcome, LeasedQueue, QueueAdmin, QueueConfig
from memtasks.storage.rows import reading
from memtasks.storage.tables import decay_jobs as t

log = logging.getLogger(__name__)
STAGE_PREFIX = "memtasks.decay.runner"
DEFAULT_MAX_ATTEMPTS = 3
ANY_TIME_MS = MAX_TIMESTAMP_MS
"""An operator runs a job by id now, whenever it was scheduled for."""


def log_stage(stage: str, job_id: str | None, message: str) -> None:
    """One diagnostic line per stage under a stable prefix (idle, claim, dispatch, …)."""
    job = f" job={job_id}" if job_id else ""
    log.info("%s stage=%s%s %s", STAGE_PREFIX, stage, job, message)


@dataclass(frozen=True, slots=True)
class DecayJob:
    """One row of ``decay_jobs``; ``spec`` is parsed when the row is well-formed."""

    id: str
    kind: str
    source_ids_json: str
    summary_method: str
    attestation_required: bool
    state: DecayState
    state_reason: str | None
    result_memory_id: str | None
    scheduled_for_ms: int
    created_at_ms: int
    created_by: str
    updated_at_ms: int
    attempts: int
    max_attempts: int
    lease_token: str | None
    locked_until_ms: int | None
    dispatched_at_ms: int | None = None
    priority: int = 4
    last_error: str | None = None
    failure_class: FailureClass | None = None
    last_backoff_ms: int | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    heartbeat_at_ms: int | None = None
    attestation_json: str | None = None
    claimed_by: str | None = None
    attempt_history: str | None = None
    fair_key: str = ""
    fair_seq: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DecayJob:
        m = dict(row)
        m["state"] = DecayState(m["state"])
        m["attestation_required"] = bool(m["attestation_required"])
        m["failure_class"] = FailureClass(m["failure_class"]) if m.get("failure_class") else None
        return cls(**m)

    def spec(self) -> DecaySpec:
        """The typed definition; :class:`ValidationError` naming the job when malformed."""
        try:
            return DecaySpec.from_row(
                self.kind, self.source_ids_json, self.summary_method, self.attestation_required
            )
        except ValidationError as exc:
            raise ValidationError(
                f"decay job {self.id} row malformed: {exc}", code=exc.code or CODE_MALFORMED
            ) from None

    @property
    def needs_operator(self) -> bool:
        return self.summary_method == SummaryMethod.LLM_SUMMARY.value

    @property
    def lease(self) -> Lease:
        if self.lease_token is None:
            raise ValueError(f"decay job {self.id} holds no lease")
        return Lease(self.id, self.lease_token, self.attempts, self.max_attempts)


class DecayJobs(LeasedQueue[DecayJob]):
    """The decay job queue. No Celery here."""

    def __init__(
        self,
        engine: Engine,
        *,
        config: QueueConfig | None = None,
        lease_ms: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        config = config or QueueConfig(max_attempts=max_attempts)
        if lease_ms is not None:
            config = replace(config, lease_ms=lease_ms)
        extra = {} if random is None else {"random": random}
        super().__init__(engine, DECAY, DecayJob.from_row, config=config, clock=clock, **extra)
        self.admin: QueueAdmin[DecayJob] = QueueAdmin(engine, DECAY, DecayJob.from_row, self.clock)

    @property
    def lease_ms(self) -> int:
        return self.config.lease_ms

    # ── enqueue ──────────────────────────────────────────────────────────────

    def enqueue(
        self,
        spec: DecaySpec,
        *,
        created_by: str,
        scheduled_for_ms: int | None = None,
        conn: Connection | None = None,
        published: bool = False,
    ) -> str:
        """Insert a pending job; ``published``: the caller sends its message after commit."""
        job_id = new_decay_job_id()
        self._insert(spec, job_id, created_by, scheduled_for_ms, conn, published, any_conflict=False)
        return job_id

    def enqueue_as(
        self,
        spec: DecaySpec,
        job_id: str,
        *,
        created_by: str,
        scheduled_for_ms: int | None = None,
        published: bool = False,
    ) -> bool:
        """Insert a pending job under ``job_id`` (chosen by a producer that has only the
        broker); False, writing nothing, when that id is stored already (the same message
        delivered again)."""
        check_decay_job_id(job_id)
        return self._insert(spec, job_id, created_by, scheduled_for_ms, None, published, any_conflict=True)

    def _insert(
        self,
        spec: DecaySpec,
        job_id: str,
        created_by: str,
        scheduled_for_ms: int | None,
        conn: Connection | None,
        published: bool,
        *,
        any_conflict: bool,
    ) -> bool:
        check_created_by(created_by)
        check_scheduled_for_ms(scheduled_for_ms)
        now = self.clock()
        scheduled = now if scheduled_for_ms is None else scheduled_for_ms
        row: dict[str, Any] = {
            "id": job_id,
            "kind": spec.kind.value,
            "source_ids_json": spec.source_ids_json(),
            "summary_method": spec.method.value,
            "attestation_required": spec.attestation_required,
            "state": DecayState.PENDING.value,
            "priority": spec.priority,
            "scheduled_for_ms": scheduled,
            "created_at_ms": now,
            "created_by": created_by,
            "attempts": 0,
            "max_attempts": self.config.max_attempts,
            "dispatched_at_ms": now if published and scheduled <= now else None,
        }
        return bool(self.insert([row], conn=conn, any_conflict=any_conflict))

    # ── claims ───────────────────────────────────────────────────────────────

    def claim_next(self, *, include_llm: bool = False) -> DecayJob | None:
        """Claim the first pending job due now, in priority order.

        Unattended (the default), LLM summaries are claimed only once an operator handed
        them to the fleet with an attestation; ``include_llm`` (an operator's own run) takes
        them too. A malformed row is failed with its invariant code and skipped.
        """
        while True:
            job = self._claim_one(include_llm)
            if job is None:
                log_stage("idle", None, "no pending decay jobs")
                return None
            try:
                job.spec()
            except ValidationError as exc:
                self.fail_malformed(job, exc)
                continue
            log_stage("claim", job.id, "pending → in_progress")
            return job

    def _claim_one(self, include_llm: bool) -> DecayJob | None:
        if not include_llm:
            jobs = self.claim_batch(1)
            return jobs[0] if jobs else None
        for job_id in self._due_pending_ids():
            job = self.claim_by_id(job_id)
            if job is not None:
                return job
        return None

    def _due_pending_ids(self, limit: int = 20) -> list[str]:
        stmt = (
            select(t.c.id)
            .where(t.c.state == DecayState.PENDING.value, t.c.scheduled_for_ms <= self.clock())
            .order_by(t.c.priority, t.c.scheduled_for_ms)
            .limit(limit)
        )
        with reading(self.engine) as c:
            return list(c.execute(stmt).scalars())

    def claim(self, job_id: str) -> DecayJob | None:
        """An operator's claim by id, or None when the job is already terminal (a no-op).

        Not found, a malformed row, or a job in progress elsewhere → :class:`ValidationError`
        with its invariant code.
        """
        job = self.get(job_id)
        if job is None:
            raise DECAY.not_found(job_id)
        try:
            job.spec()
        except ValidationError as exc:
            if job.state is DecayState.PENDING:
                claimed = self.claim_by_id(job_id, early_ms=ANY_TIME_MS)
                if claimed is not None:
                    self.fail_malformed(claimed, exc)
            raise
        if job.state.terminal:
            log_stage("skip_terminal", job_id, f"job is already {job.state.value}; no-op")
            return None
        in_progress = ValidationError(
            f"decay job {job_id} is already in_progress; refusing to re-claim from another runner",
            code=CODE_IN_PROGRESS,
        )
        if job.state is DecayState.IN_PROGRESS:
            raise in_progress
        claimed = self.claim_by_id(job_id, early_ms=ANY_TIME_MS)
        if claimed is None:
            # Lost the compare-and-set: somebody else claimed or settled it meanwhile.
            current = self.get(job_id)
            if current is not None and current.state.terminal:
                log_stage("skip_terminal", job_id, f"job is already {current.state.value}; no-op")
                return None
            raise in_progress
        log_stage("claim", job_id, "pending → in_progress")
        return claimed

    def fail_malformed(self, job: DecayJob, exc: ValidationError) -> None:
        """Fail a claimed row that is no valid decay job, as unrecoverable, with its code."""
        code = exc.code or CODE_MALFORMED
        self.settle_failed(job.lease, str(exc), FailureClass.UNRECOVERABLE, reason=code)
        log_stage("settle", job.id, f"malformed row failed: {exc}")

    # ── what only decay jobs record ──────────────────────────────────────────

    def settle_failed(
        self,
        lease: Lease,
        error: str,
        failure_class: FailureClass = FailureClass.TRANSIENT,
        *,
        reason: str | None = None,
        conn: Connection | None = None,
    ) -> FailureOutcome | None:
        """As for every job, with the seed's reason: the error's invariant code, else its
        message, else ``decay.runner.failure`` — never empty."""
        return super().settle_failed(
            lease, error, failure_class, reason=failure_reason(reason, error), conn=conn
        )

    def settle_completed(
        self, lease: Lease, result_memory_id: str | None, *, conn: Connection | None = None
    ) -> bool:
        """Settle completed with the summary memory's id (None for a principle review)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.settle_completed(lease, result_memory_id, conn=own)
        if not self.settle_done(lease, conn=conn):
            return False
        if result_memory_id is not None:
            conn.execute(update(t).where(t.c.id == lease.job_id).values(result_memory_id=result_memory_id))
        return True

    def attach_attestation(self, job_id: str, document: str) -> bool:
        """Hand a pending LLM summary to the fleet with its operator's attestation (verified again
        by the worker that runs it). False when the job is not a pending LLM summary."""
        stmt = (
            update(t)
            .where(
                t.c.id == job_id,
                t.c.state == DecayState.PENDING.value,
                t.c.summary_method == SummaryMethod.LLM_SUMMARY.value,
            )
            .values(attestation_json=document, dispatched_at_ms=None, updated_at_ms=self.clock())
        )
        with self.engine.begin() as c:
            return bool(c.execute(stmt).rowcount == 1)

    def get(self, job_id: str) -> DecayJob | None:
        return self.admin.get(job_id)


__all__ = ["STAGE_PREFIX", "DecayJob", "DecayJobs", "log_stage"]
