"""The memory-tree job queue: enqueue, claim, heartbeat, settle, recover, requeue, prune.

Every state change is one compare-and-set statement (or a fenced read plus a fenced
write in one transaction); a settle applies only while ``(id, lease_token,
status='running')`` still matches, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import logging
import random as _random
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from memtasks.domain.backoff import DEFAULT_MAX_ATTEMPTS, RetryPolicy, decide_failure
from memtasks.domain.clock import DAY_MS, MINUTE_MS, Clock, system_clock
from memtasks.domain.dedupe import REEMBED_BACKFILL_MAX_ATTEMPTS
from memtasks.domain.errors import JobNotFound, MalformedPayload, UnknownJobKind, ValidationError
from memtasks.domain.jobs import (
    REASON_ATTEMPTS_EXHAUSTED,
    REASON_DEFER_AGE,
    REASON_LEASE_EXHAUSTED,
    REASON_MALFORMED,
    REASON_RECOVERED,
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
from memtasks.storage.rows import chunks, new_token, one_statement, reading, transaction, update_picked
from memtasks.storage.tables import ACTIVE_WHERE, mem_tree_jobs

log = logging.getLogger(__name__)
t = mem_tree_jobs

TERMINAL = [s.value for s in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)]
MAX_ERROR_CHARS = 4_000


@dataclass(frozen=True, slots=True)
class QueueConfig:
    lease_ms: int = 5 * MINUTE_MS
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    defer_max_age_ms: int = 7 * DAY_MS


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

    @classmethod
    def from_row(cls, row: Row[Any]) -> Job:
        m = row._mapping
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
        )

    @property
    def lease(self) -> Lease:
        if self.lease_token is None:
            raise ValueError(f"job {self.id} holds no lease")
        return Lease(self.id, self.lease_token)

    @property
    def job_kind(self) -> JobKind:
        return JobKind.parse(self.kind)

    def payload(self) -> dict[str, Any]:
        return decode_payload(self.payload_json)


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """How a failed settle ended: retried at ``retry_at_ms``, or terminal."""

    terminal: bool
    retry_at_ms: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class RecoverResult:
    requeued: list[str]
    failed: list[str]


def _truncate(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


def _fence(lease: Lease) -> Any:
    return and_(t.c.id == lease.job_id, t.c.lease_token == lease.token, t.c.status == "running")


class MemTreeJobs:
    """Repository of the memory-tree job queue. No Celery here."""

    def __init__(
        self,
        engine: Engine,
        *,
        config: QueueConfig | None = None,
        clock: Clock = system_clock,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.engine = engine
        self.config = config or QueueConfig()
        self.clock = clock
        self.random = random

    # ── enqueue ──────────────────────────────────────────────────────────────

    def enqueue(self, job: NewJob, *, conn: Connection | None = None, published: bool = False) -> str | None:
        """Insert a ready job; None when its dedupe key is held by a ready/running row.

        ``published``: the caller publishes the job's message itself after commit, so the
        dispatcher leaves the row alone (until ``redispatch_after``, in case it never did).
        """
        return self.enqueue_many([job], conn=conn, published=published)[0]

    def enqueue_many(
        self, jobs: Sequence[NewJob], *, conn: Connection | None = None, published: bool = False
    ) -> list[str | None]:
        """Insert many jobs in one statement; per job its id, or None when deduped."""
        if not jobs:
            return []
        now = self.clock()
        rows = [self._new_row(job, now) for job in jobs]
        if published:
            for row in rows:
                if row["available_at_ms"] <= now:
                    row["dispatched_at_ms"] = now
        inserted: set[str] = set()
        with transaction(self.engine, conn) as c:
            if c.dialect.name == "postgresql":
                for part in chunks(rows, UNNEST_CHUNK):
                    columns = {name: [row[name] for row in part] for name in NEW_ROW_COLUMNS}
                    inserted.update(r[0] for r in c.execute(_PG_INSERT_MANY, columns))
            else:
                stmt = _insert_ignoring_active_duplicates(c).returning(t.c.id)
                inserted.update(r[0] for r in c.execute(stmt, rows))
        return [row["id"] if row["id"] in inserted else None for row in rows]

    def _new_row(self, job: NewJob, now: int) -> dict[str, Any]:
        kind = JobKind.parse(str(job.kind))
        default_max = (
            REEMBED_BACKFILL_MAX_ATTEMPTS if kind is JobKind.REEMBED_BACKFILL else self.config.max_attempts
        )
        return {
            "id": f"job:{uuid.uuid4()}",
            "kind": kind.value,
            "priority": kind.priority,
            "payload_json": job.payload_json,
            "dedupe_key": job.dedupe_key,
            "status": JobStatus.READY.value,
            "attempts": 0,
            "max_attempts": job.max_attempts or default_max,
            "available_at_ms": now if job.available_at_ms is None else job.available_at_ms,
            "created_at_ms": now,
            "dispatched_at_ms": None,
        }

    # ── claim ────────────────────────────────────────────────────────────────

    def claim(self, job_id: str, *, lease_ms: int | None = None) -> Job | None:
        """Claim one job by id (the path a Celery message takes).

        None when the row is not claimable now (missing, not ready, not due, retired).
        A row with an unknown kind or a malformed payload is failed as unrecoverable and
        the error naming it is raised.
        """
        if lookup_id(job_id) is None:
            log.warning("memtasks.queue: %.100r is not a job id; nothing to claim", job_id)
            return None
        now = self.clock()
        stmt = (
            update(t)
            .values(self._claim_values(now, lease_ms))
            .where(
                t.c.id == job_id,
                t.c.status == "ready",
                t.c.available_at_ms <= now,
                t.c.kind.not_in(sorted(RETIRED_KINDS)),
            )
        )
        with one_statement(self.engine) as c:
            row = c.execute(stmt.returning(*t.c)).first()
        if row is None:
            return None
        job = Job.from_row(row)
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
        self,
        limit: int,
        *,
        kinds: Sequence[JobKind] | None = None,
        lease_ms: int | None = None,
    ) -> list[Job]:
        """Claim up to ``limit`` due jobs in priority order, in one statement.

        PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait on
        each other; SQLite: one ``UPDATE … RETURNING`` under the write lock. Bad rows
        (unknown kind, malformed payload) are failed as unrecoverable, logged and
        skipped: they never break the loop.
        """
        while True:
            now = self.clock()
            candidates = (
                select(t.c.id)
                .where(
                    t.c.status == "ready",
                    t.c.available_at_ms <= now,
                    t.c.kind.not_in(sorted(RETIRED_KINDS)),
                )
                .order_by(t.c.priority, t.c.available_at_ms)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            if kinds:
                candidates = candidates.where(t.c.kind.in_([JobKind(k).value for k in kinds]))
            with self.engine.begin() as c:
                stmt = update_picked(t, candidates, c.dialect.name).values(self._claim_values(now, lease_ms))
                rows = c.execute(stmt.returning(*t.c)).all()
            jobs = sorted((Job.from_row(r) for r in rows), key=lambda j: (j.priority, j.available_at_ms))
            good = [job for job in jobs if self._check(job) is None]
            if good or not jobs:
                return good

    def _claim_values(self, now: int, lease_ms: int | None) -> dict[str, Any]:
        lease = self.config.lease_ms if lease_ms is None else lease_ms
        return {
            "status": "running",
            "attempts": t.c.attempts + 1,
            "started_at_ms": now,
            "locked_until_ms": now + lease,
            "lease_token": new_token(),
            "heartbeat_at_ms": None,
            "last_error": None,
        }

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

    # ── lease ────────────────────────────────────────────────────────────────

    def heartbeat(self, lease: Lease, *, extend_ms: int | None = None) -> bool:
        """Extend a held lease; False when the lease is gone (stop working on the job)."""
        now = self.clock()
        extend = self.config.lease_ms if extend_ms is None else extend_ms
        stmt = update(t).where(_fence(lease)).values(locked_until_ms=now + extend, heartbeat_at_ms=now)
        with one_statement(self.engine) as c:
            return c.execute(stmt).rowcount == 1

    # ── settle ───────────────────────────────────────────────────────────────

    def settle_done(self, lease: Lease, *, conn: Connection | None = None) -> bool:
        """Mark done; False (and nothing changed) when the lease no longer holds."""
        now = self.clock()
        stmt = update(t).where(_fence(lease)).values(**self._terminal_values(JobStatus.DONE, now))
        with transaction(self.engine, conn) as c:
            return c.execute(stmt).rowcount == 1

    def settle_done_many(self, leases: Sequence[Lease], *, conn: Connection | None = None) -> int:
        """Mark many done in few statements (grouped by lease token); returns how many held."""
        now = self.clock()
        by_token: dict[str, list[str]] = defaultdict(list)
        for lease in leases:
            by_token[lease.token].append(lease.job_id)
        settled = 0
        with transaction(self.engine, conn) as c:
            for token, ids in by_token.items():
                for part in chunks(ids):
                    stmt = (
                        update(t)
                        .where(t.c.id.in_(part), t.c.lease_token == token, t.c.status == "running")
                        .values(**self._terminal_values(JobStatus.DONE, now))
                    )
                    settled += c.execute(stmt).rowcount
        return settled

    @staticmethod
    def _terminal_values(status: JobStatus, now: int) -> dict[str, Any]:
        return {
            "status": status.value,
            "completed_at_ms": now,
            "locked_until_ms": None,
            "lease_token": None,
        }

    def settle_failed(
        self,
        lease: Lease,
        error: str,
        failure_class: FailureClass = FailureClass.TRANSIENT,
        *,
        reason: str | None = None,
        conn: Connection | None = None,
    ) -> FailureOutcome | None:
        """Record a failed attempt: ready again after a backoff, or terminal.

        Terminal when the failure is unrecoverable or the attempts are spent. None when
        the lease no longer holds (nothing changed).
        """
        now = self.clock()
        with transaction(self.engine, conn) as c:
            current = self._locked_row(c, lease)
            if current is None:
                return None
            decision = decide_failure(
                attempts=current.attempts,
                max_attempts=current.max_attempts,
                failure_class=failure_class,
                policy=self.config.policy,
                random=self.random,
            )
            values: dict[str, Any] = {
                "last_error": _truncate(error),
                "failure_class": failure_class.value,
            }
            if decision.terminal:
                exhausted = failure_class is FailureClass.TRANSIENT
                values |= self._terminal_values(JobStatus.FAILED, now)
                values["failure_reason"] = reason or (
                    REASON_ATTEMPTS_EXHAUSTED if exhausted else _truncate(error)
                )
                retry_at = None
            else:
                assert decision.retry_in_ms is not None
                retry_at = now + decision.retry_in_ms
                values |= self._back_to_ready(retry_at)
                values["failure_reason"] = reason
                values["last_backoff_ms"] = decision.retry_in_ms
            changed = c.execute(update(t).where(_fence(lease)).values(**values)).rowcount
        if changed != 1:
            return None
        return FailureOutcome(terminal=decision.terminal, retry_at_ms=retry_at, attempts=current.attempts)

    def settle_deferred(
        self,
        lease: Lease,
        until_ms: int,
        *,
        reason: str | None = None,
        conn: Connection | None = None,
    ) -> FailureOutcome | None:
        """Put the job back until ``until_ms`` with the attempt refunded.

        A job older than the deferral age cap fails as unrecoverable
        (``defer_age_exceeded``) instead. None when the lease no longer holds.
        """
        now = self.clock()
        with transaction(self.engine, conn) as c:
            current = self._locked_row(c, lease)
            if current is None:
                return None
            if now - current.created_at_ms > self.config.defer_max_age_ms:
                values = self._terminal_values(JobStatus.FAILED, now) | {
                    "failure_reason": REASON_DEFER_AGE,
                    "failure_class": FailureClass.UNRECOVERABLE.value,
                    "last_error": reason or REASON_DEFER_AGE,
                }
                outcome = FailureOutcome(terminal=True, retry_at_ms=None, attempts=current.attempts)
            else:
                values = self._back_to_ready(max(until_ms, now)) | {
                    "attempts": t.c.attempts - 1,
                    "last_error": reason,
                }
                outcome = FailureOutcome(
                    terminal=False, retry_at_ms=max(until_ms, now), attempts=current.attempts - 1
                )
            changed = c.execute(update(t).where(_fence(lease)).values(**values)).rowcount
        return outcome if changed == 1 else None

    @staticmethod
    def _back_to_ready(available_at_ms: int) -> dict[str, Any]:
        return {
            "status": JobStatus.READY.value,
            "available_at_ms": available_at_ms,
            "locked_until_ms": None,
            "lease_token": None,
            "dispatched_at_ms": None,
        }

    def _locked_row(self, c: Connection, lease: Lease) -> Job | None:
        stmt = select(t).where(_fence(lease)).with_for_update()
        row = c.execute(stmt).first()
        return Job.from_row(row) if row is not None else None

    # ── recovery and operator actions ────────────────────────────────────────

    def recover_expired(self) -> RecoverResult:
        """Return expired leases to ready, or fail them when their attempts are spent.

        Rows another transaction has locked (a settle in flight, or stalled mid-commit) are
        skipped, not waited for: one stalled worker must not strand every other expired
        lease. The next sweep takes them if they are still expired then.
        """
        now = self.clock()
        exhausted = t.c.attempts >= t.c.max_attempts
        expired = (
            select(t.c.id)
            .where(t.c.status == "running", t.c.locked_until_ms < now)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as c:
            stmt = (
                update_picked(t, expired, c.dialect.name)
                .values(
                    status=case((exhausted, literal(JobStatus.FAILED.value)), else_=literal("ready")),
                    available_at_ms=now,
                    locked_until_ms=None,
                    lease_token=None,
                    dispatched_at_ms=None,
                    completed_at_ms=case((exhausted, literal(now)), else_=t.c.completed_at_ms),
                    failure_reason=case(
                        (exhausted, literal(REASON_LEASE_EXHAUSTED)), else_=t.c.failure_reason
                    ),
                    failure_class=case(
                        (exhausted, literal(FailureClass.TRANSIENT.value)), else_=t.c.failure_class
                    ),
                    last_error=func.coalesce(t.c.last_error, literal(REASON_RECOVERED)),
                )
                .returning(t.c.id, t.c.status)
            )
            rows = c.execute(stmt).all()
        result = RecoverResult(
            requeued=[r.id for r in rows if r.status == "ready"],
            failed=[r.id for r in rows if r.status == "failed"],
        )
        if rows:
            log.warning(
                "memtasks.queue: recovered %d expired leases (%d requeued, %d failed)",
                len(rows),
                len(result.requeued),
                len(result.failed),
            )
        return result

    def release(self, leases: Sequence[Lease]) -> int:
        """Graceful shutdown: hand held jobs back at once, attempt refunded."""
        now = self.clock()
        released = 0
        with self.engine.begin() as c:
            for lease in leases:
                stmt = (
                    update(t)
                    .where(_fence(lease))
                    .values(
                        **self._back_to_ready(now),
                        attempts=case((t.c.attempts > 0, t.c.attempts - 1), else_=0),
                    )
                )
                released += c.execute(stmt).rowcount
        return released

    def requeue_failed(self, *, transient_only: bool = False) -> int:
        """Failed → ready with fresh attempts. ``transient_only`` skips unrecoverable ones.

        A failed row whose dedupe key is held by an active row stays failed (the active
        row does that work); of several failed rows sharing a key only the newest returns.
        """
        for _ in range(3):
            try:
                return self._requeue_failed_once(transient_only)
            except IntegrityError:
                # A producer enqueued the same dedupe key meanwhile: look again.
                continue
        return self._requeue_failed_once(transient_only)

    def _requeue_failed_once(self, transient_only: bool) -> int:
        now = self.clock()
        where = [t.c.status == "failed"]
        if transient_only:
            where.append(_transient_failure())
        with self.engine.begin() as c:
            rows = c.execute(
                select(t.c.id, t.c.dedupe_key).where(*where).order_by(t.c.completed_at_ms.desc())
            ).all()
            keys = sorted({r.dedupe_key for r in rows if r.dedupe_key is not None})
            held: set[str] = set()
            for part in chunks(keys):
                held.update(
                    c.execute(
                        select(t.c.dedupe_key).where(
                            t.c.dedupe_key.in_(part), t.c.status.in_(["ready", "running"])
                        )
                    ).scalars()
                )
            chosen: list[str] = []
            for row in rows:
                if row.dedupe_key is not None:
                    if row.dedupe_key in held:
                        continue
                    held.add(row.dedupe_key)
                chosen.append(row.id)
            requeued = 0
            for part in chunks(chosen):
                requeued += c.execute(
                    update(t)
                    .where(t.c.id.in_(part), t.c.status == "failed")
                    .values(
                        **self._back_to_ready(now),
                        attempts=0,
                        completed_at_ms=None,
                        failure_reason=None,
                        failure_class=None,
                    )
                ).rowcount
        return requeued

    # ── dispatch (the message is a hint: rows without one get one) ───────────

    def mark_for_dispatch(self, limit: int, *, redispatch_after_ms: int) -> list[Job]:
        """Due ready rows that need a message, marked as dispatched now, most urgent first.

        A row needs one when none was published since it became ready, or the last one
        is older than ``redispatch_after_ms`` (lost with a broker flush or restart). A
        duplicate message is harmless: only one claim of the row can succeed.
        """
        now = self.clock()
        picked = (
            select(t.c.id)
            .where(
                t.c.status == "ready",
                t.c.available_at_ms <= now,
                t.c.kind.not_in(sorted(RETIRED_KINDS)),
                or_(t.c.dispatched_at_ms.is_(None), t.c.dispatched_at_ms <= now - redispatch_after_ms),
            )
            .order_by(t.c.priority, t.c.available_at_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.engine.begin() as c:
            stmt = update_picked(t, picked, c.dialect.name).values(dispatched_at_ms=now)
            rows = c.execute(stmt.returning(*t.c)).all()
        return sorted((Job.from_row(r) for r in rows), key=lambda j: (j.priority, j.available_at_ms))

    def forget_dispatch(self, job_ids: Sequence[str]) -> int:
        """A publish failed: let the next dispatch sweep publish these rows again."""
        changed = 0
        with self.engine.begin() as c:
            for part in chunks(job_ids):
                changed += c.execute(
                    update(t).where(t.c.id.in_(part), t.c.status == "ready").values(dispatched_at_ms=None)
                ).rowcount
        return changed

    def postpone(self, job_id: str, until_ms: int) -> bool:
        """Move a ready (unclaimed) job's due time; no attempt is spent. False if not ready."""
        stmt = (
            update(t)
            .where(t.c.id == job_id, t.c.status == "ready")
            .values(available_at_ms=until_ms, dispatched_at_ms=None)
        )
        with self.engine.begin() as c:
            return c.execute(stmt).rowcount == 1

    def retry(self, job_id: str) -> Job:
        """An operator's retry of one failed job: ready now with fresh attempts.

        :class:`JobNotFound` when there is no such job; :class:`ValidationError` when it is
        not failed, or when its dedupe key is held by another ready or running job.
        """
        now = self.clock()
        current = self.get(job_id)
        if current is None:
            raise JobNotFound(f"job {job_id!r} not found")
        if current.status is not JobStatus.FAILED:
            raise ValidationError(f"job {job_id} is {current.status.value}: only failed jobs can be retried")
        values = self._back_to_ready(now) | {
            "attempts": 0,
            "completed_at_ms": None,
            "failure_reason": None,
            "failure_class": None,
        }
        try:
            with self.engine.begin() as c:
                row = c.execute(
                    update(t).where(t.c.id == job_id, t.c.status == "failed").values(values).returning(*t.c)
                ).first()
        except IntegrityError:
            raise ValidationError(
                f"job {job_id} cannot be retried: its dedupe key {current.dedupe_key!r} is held by "
                "another ready or running job"
            ) from None
        if row is None:
            raise ValidationError(f"job {job_id} changed meanwhile; look again")
        return Job.from_row(row)

    def list_jobs(
        self, *, status: JobStatus | None = None, kind: JobKind | None = None, limit: int = 50
    ) -> list[Job]:
        """The newest jobs first, optionally of one status and kind."""
        stmt = select(t).order_by(t.c.created_at_ms.desc(), t.c.id).limit(limit)
        if status is not None:
            stmt = stmt.where(t.c.status == JobStatus(status).value)
        if kind is not None:
            stmt = stmt.where(t.c.kind == str(kind))
        with reading(self.engine) as c:
            return [Job.from_row(row) for row in c.execute(stmt)]

    def cancel(self, job_id: str) -> bool:
        """Cancel one ready job. :class:`JobNotFound` when there is no such job."""
        if lookup_id(job_id) is None:
            raise JobNotFound(f"job {job_id!r:.80} not found")
        now = self.clock()
        with self.engine.begin() as c:
            changed = c.execute(
                update(t)
                .where(t.c.id == job_id, t.c.status == "ready")
                .values(**self._terminal_values(JobStatus.CANCELLED, now))
            ).rowcount
            if changed == 0 and c.execute(select(t.c.id).where(t.c.id == job_id)).first() is None:
                raise JobNotFound(f"job {job_id!r} not found")
        return changed == 1

    def cancel_pending(self, *, kind: JobKind | None = None) -> int:
        """Cancel every ready job (of one kind); returns how many."""
        now = self.clock()
        stmt = (
            update(t).where(t.c.status == "ready").values(**self._terminal_values(JobStatus.CANCELLED, now))
        )
        if kind is not None:
            stmt = stmt.where(t.c.kind == JobKind(kind).value)
        with self.engine.begin() as c:
            return c.execute(stmt).rowcount

    def purge_retired(self) -> int:
        """Delete rows of retired kinds; returns how many."""
        with self.engine.begin() as c:
            return c.execute(delete(t).where(t.c.kind.in_(sorted(RETIRED_KINDS)))).rowcount

    def prune_finished(self, older_than_ms: int, *, batch: int = 5_000) -> int:
        """Delete terminal rows finished before ``now − older_than_ms``, in bounded batches."""
        cutoff = self.clock() - older_than_ms
        total = 0
        while True:
            ids = (
                select(t.c.id)
                .where(t.c.status.in_(TERMINAL), t.c.completed_at_ms < cutoff)
                .limit(batch)
                .scalar_subquery()
            )
            with self.engine.begin() as c:
                n = c.execute(delete(t).where(t.c.id.in_(ids))).rowcount
            total += n
            if n < batch:
                return total

    # ── reads ────────────────────────────────────────────────────────────────

    def get(self, job_id: str) -> Job | None:
        if lookup_id(job_id) is None:
            return None  # no row has such an id (not a string, NUL, lone surrogate)
        with reading(self.engine) as c:
            row = c.execute(select(t).where(t.c.id == job_id)).first()
        return Job.from_row(row) if row is not None else None

    def count_by_status(self) -> Mapping[JobStatus, int]:
        """Rows per status, every status present (0 when none)."""
        with reading(self.engine) as c:
            rows = c.execute(select(t.c.status, func.count()).group_by(t.c.status)).all()
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in rows:
            counts[JobStatus(status)] = int(n)
        return counts

    def count_unrecoverable(self) -> int:
        """Failed rows that requeue-transient leaves parked (its exact complement)."""
        stmt = select(func.count()).where(t.c.status == "failed", ~_transient_failure())
        with reading(self.engine) as c:
            return int(c.execute(stmt).scalar_one())

    def count_total(self) -> int:
        with reading(self.engine) as c:
            return int(c.execute(select(func.count()).select_from(t)).scalar_one())


def _transient_failure() -> Any:
    return or_(t.c.failure_class.is_(None), t.c.failure_class != FailureClass.UNRECOVERABLE.value)


NEW_ROW_COLUMNS = (
    "id",
    "kind",
    "priority",
    "payload_json",
    "dedupe_key",
    "status",
    "attempts",
    "max_attempts",
    "available_at_ms",
    "created_at_ms",
    "dispatched_at_ms",
)
"""The columns :meth:`MemTreeJobs._new_row` fills, in the order of :data:`_PG_INSERT_MANY`."""

UNNEST_CHUNK = 10_000
"""Rows per PostgreSQL batch insert: one statement with one array parameter per column."""

# One statement and one plan for any number of rows: each column travels as a single
# array parameter and ``unnest`` zips them back into rows. A multi-row VALUES list costs
# SQLAlchemy a fresh compilation with a bind parameter per value, every call.
_PG_INSERT_MANY = text(
    "INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, dedupe_key, status, attempts,"
    " max_attempts, available_at_ms, created_at_ms, dispatched_at_ms)"
    " SELECT * FROM unnest(CAST(:id AS varchar[]), CAST(:kind AS varchar[]),"
    " CAST(:priority AS smallint[]), CAST(:payload_json AS text[]), CAST(:dedupe_key AS varchar[]),"
    " CAST(:status AS varchar[]), CAST(:attempts AS integer[]), CAST(:max_attempts AS integer[]),"
    " CAST(:available_at_ms AS bigint[]), CAST(:created_at_ms AS bigint[]),"
    " CAST(:dispatched_at_ms AS bigint[]))"
    " ON CONFLICT (dedupe_key) WHERE status IN ('ready', 'running') DO NOTHING"
    " RETURNING id"
)


def _insert_ignoring_active_duplicates(c: Connection) -> Any:
    """INSERT … ON CONFLICT (dedupe_key) WHERE <active> DO NOTHING, for either dialect."""
    where = text(ACTIVE_WHERE)
    if c.dialect.name == "postgresql":
        return postgresql.insert(t).on_conflict_do_nothing(index_elements=[t.c.dedupe_key], index_where=where)
    return sqlite.insert(t).on_conflict_do_nothing(index_elements=[t.c.dedupe_key], index_where=where)


__all__ = [
    "FailureOutcome",
    "Job",
    "MemTreeJobs",
    "QueueConfig",
    "RecoverResult",
]
