"""The memory-tree job table on the queue engine: its rows, its new rows, its claim checks.

Everything about a job's life — claim, lease, settle, recovery, dispatch — is the engine's
(``memtasks.storage.queue``); this adapter adds what only ``mem_tree_jobs`` knows: a new
row's kind, priority, payload and dedupe key, and that a claimed row with an unknown kind
or a malformed payload fails at once as unrecoverable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from memtasks.domain.clock import Clock
from memtasks.domain.dedupe import REEMBED_BACKFILL_MAX_ATTEMPTS
from memtasks.domain.errors import MalformedPayload, UnknownJobKind, ValidationError
from memtasks.domain.ids import check_mem_tree_job_id, mem_tree_job_ids
from memtasks.domain.jobs import (
    ACTIVE_STATUSES,
    REASON_MALFORMED,
    REASON_UNKNOWN_KIND,
    RETIRED_KINDS,
    FailureClass,
    JobKind,
    JobStatus,
    Lease,
    NewJob,
    decode_payload,
)
from memtasks.domain.wire import lookup_id
from memtasks.storage.queue import MEM_TREE, LeasedQueue, QueueAdmin, QueueConfig
from memtasks.storage.rows import reading
from memtasks.storage.tables import mem_tree_jobs

log = logging.getLogger("memtasks.queue")


@dataclass(frozen=True, slots=True)
class Job:
    """One row of ``mem_tree_jobs``."""

    id: str
    kind: str
    priority: int
    payload_json: str
    dedupe_key: str | None
    status: JobStatus
    attempts: int
    max_attempts: int
    available_at_ms: int
    locked_until_ms: int | None
    lease_token: str | None
    heartbeat_at_ms: int | None
    last_error: str | None
    failure_reason: str | None
    failure_class: FailureClass | None
    created_at_ms: int
    started_at_ms: int | None
    completed_at_ms: int | None
    dispatched_at_ms: int | None = None
    last_backoff_ms: int | None = None
    updated_at_ms: int | None = None
    claimed_by: str | None = None
    attempt_history: str | None = None
    parent_id: str | None = None
    fair_key: str = ""
    """The job's lane for fair share ('': the shared lane)."""

    @classmethod
    def from_row(cls, m: Mapping[str, Any]) -> Job:
        return cls(
            id=m["id"],
            kind=m["kind"],
            priority=m["priority"],
            payload_json=m["payload_json"],
            dedupe_key=m["dedupe_key"],
            status=JobStatus(m["status"]),
            attempts=m["attempts"],
            max_attempts=m["max_attempts"],
            available_at_ms=m["available_at_ms"],
            locked_until_ms=m["locked_until_ms"],
            lease_token=m["lease_token"],
            heartbeat_at_ms=m["heartbeat_at_ms"],
            last_error=m["last_error"],
            failure_reason=m["failure_reason"],
            failure_class=FailureClass(m["failure_class"]) if m["failure_class"] else None,
            created_at_ms=m["created_at_ms"],
            started_at_ms=m["started_at_ms"],
            completed_at_ms=m["completed_at_ms"],
            dispatched_at_ms=m.get("dispatched_at_ms"),
            last_backoff_ms=m.get("last_backoff_ms"),
            updated_at_ms=m.get("updated_at_ms"),
            claimed_by=m.get("claimed_by"),
            attempt_history=m.get("attempt_history"),
            parent_id=m.get("parent_id"),
            fair_key=str(m.get("fair_key") or ""),
        )

    @property
    def lease(self) -> Lease:
        if self.lease_token is None:
            raise ValueError(f"job {self.id} holds no lease")
        return Lease(self.id, self.lease_token, self.attempts, self.max_attempts)

    @property
    def job_kind(self) -> JobKind:
        return JobKind.parse(self.kind)

    def payload(self) -> dict[str, Any]:
        return decode_payload(self.payload_json)


REASON_DUPLICATE = "deduplicated"
"""``failure_reason`` of a job stored cancelled because its dedupe key was held."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What an enqueue under an id the producer chose did.

    ``inserted``: a new ready row. Otherwise either the id was stored already (a redelivered
    message: nothing written, ``duplicate_of`` None), or the job's dedupe key was held by the
    active job ``duplicate_of``: the id is stored as a cancelled row that says so, so that a
    producer looking its id up learns what became of it.
    """

    job_id: str
    inserted: bool
    duplicate_of: str | None = None


class MemTreeJobs(LeasedQueue[Job]):
    """The memory-tree job queue. No Celery here."""

    def __init__(
        self,
        engine: Engine,
        *,
        config: QueueConfig | None = None,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        extra = {} if random is None else {"random": random}
        super().__init__(engine, MEM_TREE, Job.from_row, config=config, clock=clock, **extra)
        self.admin: QueueAdmin[Job] = QueueAdmin(engine, MEM_TREE, Job.from_row, self.clock)

    # ── enqueue ──────────────────────────────────────────────────────────────

    def enqueue(
        self,
        job: NewJob,
        *,
        conn: Connection | None = None,
        published: bool = False,
        parent_id: str | None = None,
    ) -> str | None:
        """Insert a ready job; None when its dedupe key is held by a ready/running row.

        ``published``: the caller publishes the job's message itself after commit, so the
        dispatcher leaves the row alone (until ``redispatch_after``, in case it never did).
        ``parent_id``: the job whose handler enqueues this one (a follow-up).
        """
        return self.enqueue_many([job], conn=conn, published=published, parent_id=parent_id)[0]

    def enqueue_many(
        self,
        jobs: Sequence[NewJob],
        *,
        conn: Connection | None = None,
        published: bool = False,
        parent_id: str | None = None,
    ) -> list[str | None]:
        """Insert many jobs in one statement; per job its id, or None when deduped."""
        if not jobs:
            return []
        now = self.clock()
        kinds: dict[object, JobKind] = {}
        rows = []
        for job, job_id in zip(jobs, mem_tree_job_ids(len(jobs)), strict=True):
            kind = kinds.get(job.kind) or kinds.setdefault(job.kind, JobKind.parse(str(job.kind)))
            rows.append(self._new_row(job, job_id, kind, now, published))
        shared = self._new_values(now)
        if parent_id is not None:  # a follow-up: one parent for the statement's rows
            shared["parent_id"] = parent_id
        inserted = self.insert(rows, conn=conn, shared=shared)
        return [row["id"] if row["id"] in inserted else None for row in rows]

    def enqueue_as(self, job: NewJob, job_id: str, *, published: bool = False) -> Enqueued:
        """Insert a ready job under ``job_id`` (chosen by a producer that has only the broker).

        Idempotent: when ``job_id`` is stored already (the same message delivered again)
        nothing is written. When the job's dedupe key is held by an active job, ``job_id`` is
        stored as a cancelled row whose error names that job, so the producer's id resolves.
        """
        check_mem_tree_job_id(job_id)
        kind = JobKind.parse(str(job.kind))
        row = self._new_row(job, job_id, kind, self.clock(), published)
        for _ in range(3):  # the holder of the key may finish between two statements
            now = self.clock()
            if self.insert([row], shared=self._new_values(now), any_conflict=True):
                return Enqueued(job_id, inserted=True)
            if self.get(job_id) is not None:
                return Enqueued(job_id, inserted=False)
            holder = self._holder_of(job.dedupe_key)
            if holder is None:
                continue
            error = f"duplicate of {holder} (dedupe key {job.dedupe_key})"
            cancelled = {
                **row,
                "status": JobStatus.CANCELLED.value,
                "last_error": error,
                "failure_reason": REASON_DUPLICATE,
                "completed_at_ms": now,
                "dispatched_at_ms": None,
            }
            shared = {"attempts": 0, "created_at_ms": now, "updated_at_ms": now}
            self.insert([cancelled], shared=shared, any_conflict=True)
            return Enqueued(job_id, inserted=False, duplicate_of=holder)
        raise ValidationError(f"job {job_id} could be neither inserted nor found", code="job.enqueue.lost")

    def _holder_of(self, dedupe_key: str | None) -> str | None:
        """The active job that holds ``dedupe_key``, if any."""
        if dedupe_key is None:
            return None
        t = mem_tree_jobs
        stmt = (
            select(t.c.id)
            .where(t.c.dedupe_key == dedupe_key, t.c.status.in_(sorted(ACTIVE_STATUSES)))
            .limit(1)
        )
        with reading(self.engine) as c:
            found: str | None = c.execute(stmt).scalar()
        return found

    def _new_row(self, job: NewJob, job_id: str, kind: JobKind, now: int, published: bool) -> dict[str, Any]:
        due = now if job.available_at_ms is None else job.available_at_ms
        return {
            "id": job_id,
            "kind": kind.value,
            "priority": kind.priority,
            "payload_json": job.payload_json,
            "dedupe_key": job.dedupe_key,
            "max_attempts": job.max_attempts or self._default_max_attempts(kind),
            "available_at_ms": due,
            "dispatched_at_ms": now if published and due <= now else None,
            "fair_key": job.lane,
        }

    @staticmethod
    def _new_values(now: int) -> dict[str, Any]:
        """What every new ready row holds (sent once per statement)."""
        return {"status": JobStatus.READY.value, "attempts": 0, "created_at_ms": now, "updated_at_ms": now}

    def _default_max_attempts(self, kind: JobKind) -> int:
        if kind is JobKind.REEMBED_BACKFILL:
            return REEMBED_BACKFILL_MAX_ATTEMPTS
        return self.config.max_attempts

    # ── claim, with the row's own checks ─────────────────────────────────────

    def claim(self, job_id: str, *, lease_ms: int | None = None) -> Job | None:
        """Claim one job by id (the path a Celery message takes).

        None when the row is not claimable now (missing, not ready, not due, retired). A row
        with an unknown kind or a malformed payload is failed as unrecoverable and the error
        naming it is raised.
        """
        if lookup_id(job_id) is None:
            log.warning("memtasks.queue: %.100r is not a job id; nothing to claim", job_id)
            return None
        job = self.claim_by_id(job_id, lease_ms=lease_ms)
        if job is None:
            return None
        problem = self._check(job)
        if problem is not None:
            raise problem
        return job

    def claim_next(
        self, *, kinds: Sequence[JobKind] | None = None, lease_ms: int | None = None
    ) -> Job | None:
        """Claim the most urgent due job; None when nothing is due."""
        jobs = self.claim_batch(1, kinds=kinds, lease_ms=lease_ms)
        return jobs[0] if jobs else None

    def claim_batch(
        self, limit: int, *, kinds: Sequence[str] | None = None, lease_ms: int | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs in priority order, in one statement. Bad rows
        (unknown kind, malformed payload) are failed as unrecoverable, logged and skipped:
        they never break the loop."""
        names = None if kinds is None else [JobKind(k).value for k in kinds]
        while True:
            jobs = super().claim_batch(limit, kinds=names, lease_ms=lease_ms)
            good = [job for job in jobs if self._check(job) is None]
            if good or not jobs:
                return good

    def _check(self, job: Job) -> ValidationError | None:
        """Validate a claimed row; a bad one is failed as unrecoverable right here."""
        try:
            JobKind.parse(job.kind)
            job.payload()
        except UnknownJobKind as exc:
            self._fail_bad_row(job, REASON_UNKNOWN_KIND, str(exc))
            return exc
        except MalformedPayload as exc:
            self._fail_bad_row(job, REASON_MALFORMED, str(exc))
            return exc
        return None

    def _fail_bad_row(self, job: Job, reason: str, message: str) -> None:
        log.error("memtasks.queue: job %s failed as unrecoverable: %s", job.id, message)
        self.settle_failed(job.lease, message, FailureClass.UNRECOVERABLE, reason=reason)

    # ── reads and the retired kinds ──────────────────────────────────────────

    def get(self, job_id: str) -> Job | None:
        return self.admin.get(job_id)

    def purge_retired(self) -> int:
        """Delete rows of retired kinds; returns how many."""
        return self.admin.purge_kinds(sorted(RETIRED_KINDS))


__all__ = ["REASON_DUPLICATE", "Enqueued", "Job", "MemTreeJobs"]
