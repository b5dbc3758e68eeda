"""Decay jobs: pending → in_progress → completed | failed | cancelled.

The claim is a compare-and-set on ``state='pending'`` with a lease, so two runners never
both run a job; an expired in_progress lease is recovered; settles are fenced by the
lease token; one injected clock serves claim and settle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, case, func, literal, or_, select, update

from memtasks.domain.clock import MINUTE_MS, Clock, system_clock
from memtasks.domain.decay import (
    CODE_CANCELLED,
    CODE_IN_PROGRESS,
    CODE_LEASE_EXHAUSTED,
    CODE_MALFORMED,
    CODE_NOT_FOUND,
    DecayKind,
    DecaySpec,
    DecayState,
    SummaryMethod,
    check_created_by,
    check_scheduled_for_ms,
    failure_reason,
)
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import Lease
from memtasks.domain.wire import lookup_id
from memtasks.storage.rows import new_token, reading, transaction, update_picked
from memtasks.storage.tables import decay_jobs

log = logging.getLogger(__name__)
t = decay_jobs
STAGE_PREFIX = "memtasks.decay.runner"


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

    @classmethod
    def from_row(cls, row: Row[Any]) -> DecayJob:
        m = dict(row._mapping)
        m["state"] = DecayState(m["state"])
        m["attestation_required"] = bool(m["attestation_required"])
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
    def lease(self) -> Lease:
        if self.lease_token is None:
            raise ValueError(f"decay job {self.id} holds no lease")
        return Lease(self.id, self.lease_token)


def _fence(lease: Lease) -> Any:
    return and_(t.c.id == lease.job_id, t.c.lease_token == lease.token, t.c.state == "in_progress")


class DecayJobs:
    """Repository of decay jobs. No Celery here."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_ms: int = 5 * MINUTE_MS,
        max_attempts: int = 3,
        clock: Clock = system_clock,
    ) -> None:
        self.engine = engine
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts
        self.clock = clock

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
        check_created_by(created_by)
        check_scheduled_for_ms(scheduled_for_ms)
        now = self.clock()
        job_id = f"dj_{uuid.uuid4().hex}"
        scheduled = now if scheduled_for_ms is None else scheduled_for_ms
        row: dict[str, object] = {
            "id": job_id,
            "kind": spec.kind.value,
            "source_ids_json": spec.source_ids_json(),
            "summary_method": spec.method.value,
            "attestation_required": spec.attestation_required,
            "state": DecayState.PENDING.value,
            "scheduled_for_ms": scheduled,
            "created_at_ms": now,
            "created_by": created_by,
            "updated_at_ms": now,
            "max_attempts": self.max_attempts,
        }
        if published and scheduled <= now:
            row["dispatched_at_ms"] = now
        with transaction(self.engine, conn) as c:
            c.execute(t.insert().values(row))
        return job_id

    def get(self, job_id: str) -> DecayJob | None:
        if lookup_id(job_id) is None:
            return None  # no row has such an id (not a string, NUL, lone surrogate)
        with reading(self.engine) as c:
            row = c.execute(select(t).where(t.c.id == job_id)).first()
        return DecayJob.from_row(row) if row is not None else None

    # ── claim ────────────────────────────────────────────────────────────────

    def claim_next(self, *, include_llm: bool = False) -> DecayJob | None:
        """Claim the first pending job due now; LLM-summary jobs only when asked.

        Unattended workers leave LLM jobs pending for an operator run. A malformed row
        is failed with its invariant code and skipped.
        """
        while True:
            now = self.clock()
            candidate = (
                select(t.c.id)
                .where(t.c.state == "pending", t.c.scheduled_for_ms <= now)
                .order_by(t.c.scheduled_for_ms, t.c.created_at_ms)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if not include_llm:
                candidate = candidate.where(t.c.summary_method != SummaryMethod.LLM_SUMMARY.value)
            with self.engine.begin() as c:
                stmt = update_picked(t, candidate, c.dialect.name).values(self._claim_values(now))
                row = c.execute(stmt.where(t.c.state == "pending").returning(*t.c)).first()
            if row is None:
                log_stage("idle", None, "no pending decay jobs")
                return None
            job = DecayJob.from_row(row)
            try:
                job.spec()
            except ValidationError as exc:
                self.settle_failed(job.lease, exc.code or CODE_MALFORMED)
                log_stage("settle", job.id, f"malformed row failed: {exc}")
                continue
            log_stage("claim", job.id, "pending → in_progress")
            return job

    def mark_for_dispatch(self, limit: int, *, redispatch_after_ms: int) -> list[str]:
        """Ids of due pending deterministic jobs that need a message, marked dispatched now.

        LLM-summary jobs are never dispatched: only an operator runs them.
        """
        now = self.clock()
        picked = (
            select(t.c.id)
            .where(
                t.c.state == "pending",
                t.c.scheduled_for_ms <= now,
                t.c.summary_method != SummaryMethod.LLM_SUMMARY.value,
                or_(t.c.dispatched_at_ms.is_(None), t.c.dispatched_at_ms <= now - redispatch_after_ms),
            )
            .order_by(t.c.scheduled_for_ms, t.c.created_at_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as c:
            stmt = update_picked(t, picked, c.dialect.name).values(dispatched_at_ms=now)
            return [row.id for row in c.execute(stmt.returning(t.c.id))]

    def claim(self, job_id: str) -> DecayJob | None:
        """Claim one job by id, or None when it is already terminal (a no-op).

        Not found, a malformed row, or a job in progress elsewhere → :class:`ValidationError`
        with its invariant code.
        """
        job = self.get(job_id)
        if job is None:
            raise ValidationError(f"decay job {job_id} not found", code=CODE_NOT_FOUND)
        try:
            job.spec()
        except ValidationError as exc:
            if job.state is DecayState.PENDING:
                self._fail_malformed(job_id, exc)
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
        now = self.clock()
        with self.engine.begin() as c:
            row = c.execute(
                update(t)
                .values(self._claim_values(now))
                .where(t.c.id == job_id, t.c.state == "pending")
                .returning(*t.c)
            ).first()
        if row is None:
            # Lost the compare-and-set: somebody else claimed or settled it meanwhile.
            current = self.get(job_id)
            if current is not None and current.state.terminal:
                log_stage("skip_terminal", job_id, f"job is already {current.state.value}; no-op")
                return None
            raise in_progress
        log_stage("claim", job_id, "pending → in_progress")
        return DecayJob.from_row(row)

    def _fail_malformed(self, job_id: str, exc: ValidationError) -> None:
        """Claim a pending malformed row (compare-and-set) and fail it with its code."""
        with self.engine.begin() as c:
            row = c.execute(
                update(t)
                .values(self._claim_values(self.clock()))
                .where(t.c.id == job_id, t.c.state == "pending")
                .returning(*t.c)
            ).first()
        if row is not None:
            self.settle_failed(DecayJob.from_row(row).lease, exc.code or CODE_MALFORMED)
            log_stage("settle", job_id, f"malformed row failed: {exc}")

    def _claim_values(self, now: int) -> dict[str, Any]:
        return {
            "state": DecayState.IN_PROGRESS.value,
            "attempts": t.c.attempts + 1,
            "lease_token": new_token(),
            "locked_until_ms": now + self.lease_ms,
            "updated_at_ms": now,
        }

    # ── lease and settle ─────────────────────────────────────────────────────

    def heartbeat(self, lease: Lease) -> bool:
        now = self.clock()
        with self.engine.begin() as c:
            return (
                c.execute(update(t).where(_fence(lease)).values(locked_until_ms=now + self.lease_ms)).rowcount
                == 1
            )

    def settle_completed(
        self, lease: Lease, result_memory_id: str | None, *, conn: Connection | None = None
    ) -> bool:
        now = self.clock()
        values = self._settled(DecayState.COMPLETED, now) | {"result_memory_id": result_memory_id}
        with transaction(self.engine, conn) as c:
            return c.execute(update(t).where(_fence(lease)).values(**values)).rowcount == 1

    def settle_failed(self, lease: Lease, reason: str | None, *, conn: Connection | None = None) -> bool:
        """Fail with a reason that is never empty (``decay.runner.failure`` at worst)."""
        now = self.clock()
        values = self._settled(DecayState.FAILED, now) | {"state_reason": failure_reason(None, reason)}
        with transaction(self.engine, conn) as c:
            return c.execute(update(t).where(_fence(lease)).values(**values)).rowcount == 1

    @staticmethod
    def _settled(state: DecayState, now: int) -> dict[str, Any]:
        return {
            "state": state.value,
            "updated_at_ms": now,
            "lease_token": None,
            "locked_until_ms": None,
        }

    def recover_expired(self) -> tuple[list[str], list[str]]:
        """Expired in_progress leases → pending again, or failed when attempts are spent."""
        now = self.clock()
        exhausted = t.c.attempts >= t.c.max_attempts
        stmt = (
            update(t)
            .where(t.c.state == "in_progress", t.c.locked_until_ms < now)
            .values(
                state=case((exhausted, literal("failed")), else_=literal("pending")),
                state_reason=case((exhausted, literal(CODE_LEASE_EXHAUSTED)), else_=t.c.state_reason),
                lease_token=None,
                locked_until_ms=None,
                dispatched_at_ms=None,
                updated_at_ms=now,
            )
            .returning(t.c.id, t.c.state)
        )
        with self.engine.begin() as c:
            rows = c.execute(stmt).all()
        return [r.id for r in rows if r.state == "pending"], [r.id for r in rows if r.state == "failed"]

    # ── operator actions and reads ───────────────────────────────────────────

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending job. Not found → :class:`ValidationError`."""
        if lookup_id(job_id) is None:
            raise ValidationError(f"decay job {job_id!r:.80} not found", code=CODE_NOT_FOUND)
        now = self.clock()
        with self.engine.begin() as c:
            changed = c.execute(
                update(t)
                .where(t.c.id == job_id, t.c.state == "pending")
                .values(**self._settled(DecayState.CANCELLED, now), state_reason=CODE_CANCELLED)
            ).rowcount
        if changed == 0 and self.get(job_id) is None:
            raise ValidationError(f"decay job {job_id} not found", code=CODE_NOT_FOUND)
        return changed == 1

    def cancel_pending(self, *, kind: DecayKind | None = None) -> int:
        now = self.clock()
        stmt = (
            update(t)
            .where(t.c.state == "pending")
            .values(**self._settled(DecayState.CANCELLED, now), state_reason=CODE_CANCELLED)
        )
        if kind is not None:
            stmt = stmt.where(t.c.kind == DecayKind(kind).value)
        with self.engine.begin() as c:
            return c.execute(stmt).rowcount

    def count_by_state(self) -> Mapping[DecayState, int]:
        with reading(self.engine) as c:
            rows = c.execute(select(t.c.state, func.count()).group_by(t.c.state)).all()
        counts = dict.fromkeys(DecayState, 0)
        for state, n in rows:
            counts[DecayState(state)] = int(n)
        return counts


__all__ = ["STAGE_PREFIX", "DecayJob", "DecayJobs", "log_stage"]
