"""Run decay jobs: claim → dispatch → settle, exactly once in effect.

Guarantees:

- **Atomic effects**: a compression's summary memory, its supersession edges and the job's
  ``completed`` settle commit in one transaction. The settle is fenced by the claim's lease;
  when the lease was lost (recovered and re-claimed elsewhere) everything rolls back and
  :class:`SettleFenced` is raised.
- **Retry or fail closed, as every job**: input that can never succeed (missing sources,
  mixed kinds, attestation rejections, a refusing backend: a
  :class:`~memtasks.domain.errors.ValidationError` with a ``code``) fails the job at once as
  unrecoverable; any other error (a summary backend's timeout) is transient: the job is
  pending again after ``min(base × 2^(attempt−1), cap)`` until its attempts are spent. The
  reason recorded is the error's stable invariant code, else its message, else
  ``decay.runner.failure``; the original exception is re-raised after the settle (a note
  on it names the job, the reason and whether it retries).
- **LLM summaries need an operator**: unattended workers claim an LLM job only once an
  operator handed it to the fleet with an attestation (:meth:`DecayJobs.attach_attestation`);
  it runs only with an attestation for that very job that :class:`AttestationVerifier`
  accepts — the job's ``attestation_required`` flag cannot waive it — and only with the
  pinned model and prompt hash handed to the backend. The default backend refuses. Whoever
  runs it, a worker or an operator's ``memtasks decay run``, holds a fleet-wide LLM permit.
- **Idempotent by id**: :meth:`DecayRunner.run_by_id` on a terminal job is a no-op; not found,
  a malformed row, or a job in progress elsewhere → :class:`ValidationError` (from
  :meth:`DecayJobs.claim`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection, Engine

from memtasks.domain.attestation import CODE_NO_OPERATOR_KEY, AttestationError, parse_attestation
from memtasks.domain.budgets import metering
from memtasks.domain.clock import Clock
from memtasks.domain.compression import CompressionPolicy, Source, Summary, compress, summarise_with
from memtasks.domain.decay import DecayKind, DecaySpec, DecayState, SummaryMethod, failure_reason
from memtasks.domain.errors import LeaseLost, ValidationError
from memtasks.domain.jobs import FailureClass, Lease
from memtasks.services.attestation import AttestationVerifier
from memtasks.services.budgets import Budgets
from memtasks.services.holding import Holding, Permit, PermitsBusy
from memtasks.services.lease_keeper import LeaseWatch
from memtasks.storage.decay_queue import DecayJob, DecayJobs, log_stage
from memtasks.storage.lock_wait import is_lock_timeout
from memtasks.storage.memory_repo import MemoryStore

log = logging.getLogger("memtasks.decay")

CODE_BACKEND_REFUSED = "decay.llm_summary.backend_refused"
MAX_REASON_CHARS = 2000

AttestationSource = Callable[[str], bytes | str | None]
"""Given a job id, the operator attestation document for it, or None."""


class SummaryBackend(Protocol):
    """A plug-in that summarises sources with a model. memtasks never calls an LLM itself."""

    def summarise(self, sources: Sequence[Source], model: str, prompt_template_hash: str) -> str:
        """The summary text of ``sources`` made by ``model`` with the pinned prompt template."""
        ...


class SummaryBackendRefused(ValidationError):
    """The summary backend refuses to run (no LLM is configured)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or f"{CODE_BACKEND_REFUSED}: no summary backend is configured", code=CODE_BACKEND_REFUSED
        )


class RefusingSummaryBackend:
    """The default backend: refuses every request (fail closed)."""

    def summarise(self, sources: Sequence[Source], model: str, prompt_template_hash: str) -> str:  # noqa: ARG002
        raise SummaryBackendRefused()


class SettleFenced(LeaseLost):
    """The job's lease was lost before it settled: nothing this run wrote was committed."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What :meth:`DecayRunner.run_by_id` did: ``ran`` False means a terminal no-op."""

    job_id: str
    ran: bool
    state: DecayState
    result_memory_id: str | None


@dataclass(frozen=True, slots=True)
class FleetRun:
    """What a worker's run of a decay job did (the task's result, shown by Flower)."""

    job_id: str
    outcome: str
    attempts: int = 0
    result_memory_id: str | None = None
    error: str | None = None


class DecayRunner:
    """The decay-job use case. No Celery here; the clock defaults to ``decay_jobs.clock``."""

    def __init__(
        self,
        engine: Engine,
        decay_jobs: DecayJobs,
        *,
        summary_backend: SummaryBackend | None = None,
        clock: Clock | None = None,
        verifier: AttestationVerifier | None = None,
        memories: MemoryStore | None = None,
        policy: CompressionPolicy | None = None,
        holding: Holding | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.engine = engine
        self.decay_jobs = decay_jobs
        self.budgets = budgets
        """LLM budgets an LLM summary handed to the fleet is admitted by (None: none set)."""
        self.summary_backend: SummaryBackend = (
            RefusingSummaryBackend() if summary_backend is None else summary_backend
        )
        self.clock: Clock = decay_jobs.clock if clock is None else clock
        self.verifier = verifier
        self.memories = MemoryStore(engine, clock=self.clock) if memories is None else memories
        self.policy = CompressionPolicy() if policy is None else policy
        self.holding = Holding() if holding is None else holding

    # ── an operator's entry points ───────────────────────────────────────────

    def run_next(
        self, include_llm: bool = False, *, attestation_for: AttestationSource | None = None
    ) -> str | None:
        """Run the first due pending job; its id, or None when there is none.

        Unattended (the default), LLM-summary jobs are picked only once an operator handed
        them to the fleet. With ``include_llm``, an LLM job runs with ``attestation_for(job_id)``;
        without a valid one it is failed (fail closed). Errors as in :meth:`run_by_id`.
        """
        with self.holding.permit(include_llm) as permit:
            if not permit.granted:
                raise PermitsBusy()
            job = self.decay_jobs.claim_next(include_llm=include_llm)
            if job is None:
                return None
            attestation = None
            if attestation_for is not None and job.needs_operator:
                attestation = attestation_for(job.id)
            self._run(job, attestation, permit)
        return job.id

    def run_by_id(self, job_id: str, attestation: bytes | str | None = None) -> RunOutcome:
        """Run one job. ``attestation`` is the operator attestation document (JSON text or
        bytes), needed for an LLM-summary job and ignored otherwise.

        Terminal → no-op (``ran`` False, row untouched). Not found / malformed / in progress
        → :class:`ValidationError` with ``decay.job.*`` codes, nothing changed. A failed
        run re-raises its error after the job is settled; :class:`SettleFenced` when the
        lease was lost; :class:`PermitsBusy` (nothing claimed) when an LLM summary finds every
        fleet-wide LLM permit taken.
        """
        current = self.decay_jobs.get(job_id)
        with self.holding.permit(current is not None and current.needs_operator) as permit:
            if not permit.granted:
                raise PermitsBusy()
            job = self.decay_jobs.claim(job_id)
            if job is None:
                current = self.decay_jobs.get(job_id)
                if current is None:  # deleted meanwhile
                    raise ValidationError(f"decay job {job_id} not found", code="decay.job.not_found")
                return RunOutcome(job_id, False, current.state, current.result_memory_id)
            memory_id = self._run(job, attestation, permit)
        return RunOutcome(job_id, True, DecayState.COMPLETED, memory_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending job: True when it was pending; not found → ValidationError."""
        return self.decay_jobs.admin.cancel(job_id)

    def cancel_pending(self, *, kind: DecayKind | None = None) -> int:
        """Cancel every pending job (of ``kind``); returns how many."""
        return self.decay_jobs.admin.cancel_ready(kind=None if kind is None else DecayKind(kind).value)

    # ── the fleet's entry point ──────────────────────────────────────────────

    def run_for_fleet(self, job_id: str) -> FleetRun:
        """What a ``memtasks.decay.run`` message does: the job's row decides.

        Not claimable (gone, done, running elsewhere, not due) → nothing happens. An LLM
        summary runs only with the attestation an operator stored with it, and only while
        this worker holds an LLM permit (none free: the job waits a little, unclaimed).
        """
        row = self.decay_jobs.get(job_id)
        if row is None:
            return FleetRun(job_id, "not_found")
        if row.needs_operator and row.attestation_json is None:
            log.warning(
                "memtasks.decay: %s is an LLM summary: it runs only with `memtasks decay run %s "
                "--attestation FILE`, or on the fleet after `memtasks decay submit %s --attestation FILE`",
                job_id,
                job_id,
                job_id,
            )
            return FleetRun(job_id, "needs_operator")
        with self.holding.permit(row.needs_operator) as permit:
            if not permit.granted:
                self.decay_jobs.postpone(job_id, self.holding.permit_wait_ms)
                return FleetRun(job_id, "waiting_for_permit")
            budgets = self.budgets if row.needs_operator else None
            if budgets is not None:
                admission = budgets.admit(job_id, row.fair_key)
                if not admission.granted:
                    self.decay_jobs.postpone(job_id, budgets.defer_ms(admission, self.holding.permit_wait_ms))
                    return FleetRun(job_id, "waiting_for_budget")
            job = self.decay_jobs.claim_by_id(job_id)
            if job is None:
                if budgets is not None:
                    budgets.release(job_id)
                return FleetRun(job_id, "not_claimable")
            try:
                job.spec()
            except ValidationError as exc:
                self.decay_jobs.fail_malformed(job, exc)
                return FleetRun(job_id, "failed", attempts=job.attempts, error=str(exc))
            try:
                with metering() as meter:
                    try:
                        memory_id = self._run(job, None, permit)
                    finally:
                        if budgets is not None:
                            budgets.settle(job_id, meter)
            except SettleFenced as exc:
                return FleetRun(job_id, "fenced", attempts=job.attempts, error=str(exc))
            except Exception as exc:
                state = self.decay_jobs.get(job_id)
                retrying = state is not None and state.state is DecayState.PENDING
                log.log(
                    logging.WARNING if retrying else logging.ERROR,
                    "memtasks.decay: job %s attempt %d failed (%s): %s",
                    job_id,
                    job.attempts,
                    "will retry" if retrying else "terminal",
                    _reason(exc),
                    exc_info=not isinstance(exc, ValidationError),
                )
                return FleetRun(
                    job_id, "retry" if retrying else "failed", attempts=job.attempts, error=_reason(exc)
                )
        return FleetRun(job_id, "completed", attempts=job.attempts, result_memory_id=memory_id)

    # ── one run ──────────────────────────────────────────────────────────────

    def _run(
        self, job: DecayJob, attestation: bytes | str | None, permit: Permit | None = None
    ) -> str | None:
        lease = job.lease
        with self.holding.lease(self.decay_jobs, lease, permit) as watch:
            try:
                memory_id = self._dispatch(job, job.spec(), lease, attestation or job.attestation_json, watch)
            except SettleFenced:
                log_stage("settle", job.id, "lease lost before settle; effects rolled back")
                raise
            except Exception as exc:
                watch.settling()
                self._settle_failure(job, exc)
                raise
        log_stage("complete", job.id, "transitioned to completed")
        return memory_id

    def _settle_failure(self, job: DecayJob, exc: Exception) -> None:
        if is_lock_timeout(exc):
            deferred = self.decay_jobs.defer_lock_wait(job.lease, f"{type(exc).__name__}: {exc}")
            if deferred is None:
                raise SettleFenced(f"decay job {job.id}: lease lost before it stepped aside") from exc
            log_stage(
                "settle", job.id, f"met a row lock; deferred to {deferred.retry_at_ms}, attempt refunded"
            )
            exc.add_note(f"decay job {job.id} met a row lock held by another transaction; it will retry")
            return
        reason = _reason(exc)
        failure_class = (
            FailureClass.UNRECOVERABLE if isinstance(exc, ValidationError) else FailureClass.TRANSIENT
        )
        outcome = self.decay_jobs.settle_failed(
            job.lease, f"{type(exc).__name__}: {exc}", failure_class, reason=reason
        )
        if outcome is None:
            log_stage("settle", job.id, "lease lost; failure not recorded")
            raise SettleFenced(f"decay job {job.id}: lease lost before its failure settled") from exc
        if outcome.terminal:
            log_stage("settle", job.id, f"failed: {reason}")
            log_stage("complete", job.id, "transitioned to failed")
            exc.add_note(f"decay job {job.id} settled failed: {reason}")
        else:
            log_stage(
                "settle",
                job.id,
                f"attempt {outcome.attempts} failed, retries at {outcome.retry_at_ms}: {reason}",
            )
            exc.add_note(f"decay job {job.id} attempt {outcome.attempts} failed ({reason}); it will retry")

    def _dispatch(
        self,
        job: DecayJob,
        spec: DecaySpec,
        lease: Lease,
        attestation: bytes | str | None,
        watch: LeaseWatch,
    ) -> str | None:
        if spec.kind is DecayKind.EXPIRED_PRINCIPLE_REVIEW:
            log_stage("dispatch", job.id, "kind=expired_principle_review (ceremony opened separately)")
            watch.settling()
            with self.engine.begin() as conn:
                self._settle_completed(conn, job, lease, None, "ceremony opened; no memory produced")
            return None
        log_stage("dispatch", job.id, f"kind={spec.kind.value} method={spec.method.value}")
        if spec.method is SummaryMethod.DETERMINISTIC_CONCATENATE:
            with self.engine.begin() as conn:
                sources = self.memories.load_sources(spec.source_ids, conn=conn)
                summary = compress(sources, self.policy)
                watch.settling()
                return self._land(conn, job, lease, summary)
        summary = self._llm_summary(job, spec, attestation)
        if watch.lost:
            raise SettleFenced(f"decay job {job.id}: lease lost while its summary was written")
        watch.settling()
        with self.engine.begin() as conn:
            self.memories.load_sources(spec.source_ids, conn=conn)  # still all there
            return self._land(conn, job, lease, summary)

    def _llm_summary(self, job: DecayJob, spec: DecaySpec, attestation: bytes | str | None) -> Summary:
        """Verify the attestation, then ask the backend; outside any transaction (it may be slow)."""
        if self.verifier is None:
            parse_attestation(attestation)  # a missing one is reported as missing
            raise AttestationError("no operator public key is configured", code=CODE_NO_OPERATOR_KEY)
        verified = self.verifier.verify(attestation, job_id=job.id, now_ms=self.clock())
        log_stage("dispatch", job.id, f"attestation of operator {verified.claims.operator_id} verified")
        sources = self.memories.load_sources(spec.source_ids)
        text = self.summary_backend.summarise(
            sources, self.verifier.model, self.verifier.prompt_template_hash
        )
        return summarise_with(sources, text, self.policy)

    def _land(self, conn: Connection, job: DecayJob, lease: Lease, summary: Summary) -> str:
        memory_id = self.memories.insert_summary(summary, conn=conn)
        self.memories.write_supersessions(memory_id, summary, decay_job_id=job.id, conn=conn)
        self._settle_completed(conn, job, lease, memory_id, f"compression ok; produced {memory_id}")
        return memory_id

    def _settle_completed(
        self, conn: Connection, job: DecayJob, lease: Lease, memory_id: str | None, message: str
    ) -> None:
        log_stage("settle", job.id, message)
        if not self.decay_jobs.settle_completed(lease, memory_id, conn=conn):
            # Raised inside the caller's ``engine.begin()``: the whole transaction rolls back.
            raise SettleFenced(f"decay job {job.id}: lease lost before settle; nothing committed")


def _reason(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    reason = failure_reason(code if isinstance(code, str) else None, str(exc))
    return reason[:MAX_REASON_CHARS]


__all__ = [
    "CODE_BACKEND_REFUSED",
    "AttestationSource",
    "DecayRunner",
    "FleetRun",
    "RefusingSummaryBackend",
    "RunOutcome",
    "SettleFenced",
    "SummaryBackend",
    "SummaryBackendRefused",
]
