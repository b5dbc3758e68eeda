"""The leased-queue engine: one implementation of a job's life, for every job table.

Enqueue inserts a ready row (deduplicated where the table has a dedupe key); a claim is one
compare-and-set that takes a ready, due row under a fresh random lease token; heartbeats
extend the lease; every settle applies only while ``(id, lease_token, running)`` still
matches, so a worker whose lease was recovered changes nothing; recovery returns expired
leases without waiting on rows another transaction holds. Each of these is one named
statement (``memtasks.storage.queue.sql_*``), run alone in one round trip or inside the
caller's transaction, and every one of them reads "now" from the database.

The job tables' own rules — what a new row holds, how a row is checked when claimed —
belong to their adapters (``memtasks.storage.mem_tree_queue``, ``memtasks.storage.decay_queue``).
"""

from __future__ import annotations

import json
import logging
import os
import random as _random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from memtasks.domain.backoff import DEFAULT_MAX_ATTEMPTS, RetryPolicy, decide_failure
from memtasks.domain.clock import DAY_MS, MINUTE_MS, Clock
from memtasks.domain.jobs import FailureClass, Lease
from memtasks.domain.lifecycle import Phase
from memtasks.storage.queue.clock import DatabaseClock, database_clock
from memtasks.storage.queue.execute import Executor
from memtasks.storage.queue.insert import Inserter
from memtasks.storage.queue.statements import Statement, statements
from memtasks.storage.queue.table import QueueTable
from memtasks.storage.rows import new_token

log = logging.getLogger("memtasks.queue")

R = TypeVar("R")

MAX_ERROR_CHARS = 4_000
RECOVER_BATCH = 1_000
PAIRS_CHUNK = 5_000
LOCK_RETRY_MS = 2_000
"""A job whose handler met a lock held by another transaction is due again after this long
(plus up to as much again, at random, so the jobs that met one lock do not meet it together)."""
LOCK_WAIT_REASON = "lock_wait"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    lease_ms: int = 5 * MINUTE_MS
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    defer_max_age_ms: int = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """How a failed or deferred settle ended: ready again at ``retry_at_ms``, or terminal."""

    terminal: bool
    retry_at_ms: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class RecoverResult:
    requeued: list[str]
    failed: list[str]


_HOST: list[str] = []


def worker_identity() -> str:
    """Who claims: ``host:pid`` of this process (the host read once, the pid every time — a
    forked pool process is a worker of its own). Recorded in ``claimed_by`` and each attempt."""
    if not _HOST:
        _HOST.append(socket.gethostname()[:120] or "unknown-host")
    return f"{_HOST[0]}:{os.getpid()}"


def truncate(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


class LeasedQueue(Generic[R]):
    """The hot path of one job table. ``decode`` turns a row (a dict) into the table's job.

    ``clock``: None (production) lets every statement read the database's clock; a test
    passes a clock (a frozen one) whose time is bound into the statements instead.
    """

    def __init__(
        self,
        engine: Engine,
        table: QueueTable,
        decode: Callable[[Mapping[str, Any]], R],
        *,
        config: QueueConfig | None = None,
        clock: Clock | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.engine = engine
        self.table = table
        self.decode = decode
        self.config = config or QueueConfig()
        self.clock: Clock = database_clock(engine) if clock is None else clock
        self._bound_clock = not isinstance(self.clock, DatabaseClock)
        self.random = random
        self.sql = statements(table, engine.dialect.name)
        self._pg = engine.dialect.name == "postgresql"
        self._executor = Executor(engine)
        self._inserter = Inserter(table)

    # ── running statements ───────────────────────────────────────────────────

    def _run(self, statement: Statement, params: dict[str, Any], conn: Connection | None = None) -> Any:
        params["now"] = self.clock() if self._bound_clock else None
        return self._executor.run(statement.sql, params, conn, prepare=statement.prepared)

    def _list(self, values: Sequence[str]) -> Any:
        return list(values) if self._pg else json.dumps(list(values))

    def _pairs(self, leases: Sequence[Lease]) -> dict[str, Any]:
        if self._pg:
            return {"ids": [lease.job_id for lease in leases], "tokens": [lease.token for lease in leases]}
        return {"pairs": json.dumps([[lease.job_id, lease.token] for lease in leases])}

    # ── enqueue ──────────────────────────────────────────────────────────────

    def insert(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        conn: Connection | None = None,
        shared: Mapping[str, Any] | None = None,
        any_conflict: bool = False,
    ) -> set[str]:
        """Insert new ready rows (their ids set by the adapter) in one statement per chunk;
        the ids that were inserted (a row whose dedupe key an active row holds is not).

        ``shared``: values every row takes (sent once). A row's creation time, its
        ``updated_at_ms`` and its due time default to the clock's now. ``any_conflict``: the
        ids were chosen by the caller; a row whose id is stored already is skipped too."""
        if not rows:
            return set()
        now = self.clock()
        common = dict(shared or {})
        for column in ("created_at_ms", "updated_at_ms", self.table.due):
            if column not in rows[0] and column not in common:
                common[column] = now
        for row in rows:
            if self.table.due in row and row[self.table.due] is None:
                row[self.table.due] = now
        return self._inserter.insert(self.engine, rows, conn, common, any_conflict=any_conflict)

    # ── claim ────────────────────────────────────────────────────────────────

    def claim_by_id(self, job_id: str, *, lease_ms: int | None = None, early_ms: int = 0) -> R | None:
        """Claim one ready, due, claimable row by id; None when it is not claimable now.

        ``early_ms``: claim it that much before its due time (an operator running a job now).
        """
        params = {
            "id": job_id,
            "lease_ms": self.config.lease_ms if lease_ms is None else lease_ms,
            "token": new_token(),
            "early_ms": early_ms,
            "worker": worker_identity(),
        }
        result = self._run(self.sql.claim_by_id, params)
        return self.decode(result.rows[0]) if result.rows else None

    def claim_batch(
        self, limit: int, *, kinds: Sequence[str] | None = None, lease_ms: int | None = None
    ) -> list[R]:
        """Claim up to ``limit`` due rows in priority order, oldest first, in one statement
        (``SKIP LOCKED`` on PostgreSQL: concurrent claimers never wait on each other). Every
        row of one batch shares one lease token."""
        params = {
            "limit": limit,
            "kinds": None if not kinds else self._list([str(k) for k in kinds]),
            "lease_ms": self.config.lease_ms if lease_ms is None else lease_ms,
            "token": new_token(),
            "worker": worker_identity(),
        }
        statement = self.sql.claim_next if limit == 1 else self.sql.claim_batch
        rows = self._run(statement, params).rows
        rows.sort(key=lambda r: (r["priority"], r[self.table.due]))
        return [self.decode(row) for row in rows]

    # ── lease ────────────────────────────────────────────────────────────────

    def heartbeat(self, lease: Lease, *, extend_ms: int | None = None) -> bool:
        """Extend a held lease; False when the lease is gone (stop working on the job)."""
        extend = self.config.lease_ms if extend_ms is None else extend_ms
        params = {"id": lease.job_id, "token": lease.token, "lease_ms": extend}
        return bool(self._run(self.sql.heartbeat, params).rowcount == 1)

    # ── settle ───────────────────────────────────────────────────────────────

    def settle_done(self, lease: Lease, *, conn: Connection | None = None) -> bool:
        """Mark done; False (and nothing changed) when the lease no longer holds."""
        params = {"id": lease.job_id, "token": lease.token}
        return bool(self._run(self.sql.settle_done, params, conn).rowcount == 1)

    def settle_done_many(self, leases: Sequence[Lease], *, conn: Connection | None = None) -> int:
        """Mark many done in one statement per chunk; returns how many leases held."""
        settled = 0
        for start in range(0, len(leases), PAIRS_CHUNK):
            part = leases[start : start + PAIRS_CHUNK]
            settled += self._run(self.sql.settle_done_many, self._pairs(part), conn).rowcount
        return settled

    def settle_failed(
        self,
        lease: Lease,
        error: str,
        failure_class: FailureClass = FailureClass.TRANSIENT,
        *,
        reason: str | None = None,
        conn: Connection | None = None,
    ) -> FailureOutcome | None:
        """Record a failed attempt: ready again after its backoff, or terminal when the
        failure is unrecoverable or the attempts are spent. None when the lease no longer
        holds (nothing changed)."""
        decision = decide_failure(
            attempts=lease.attempt,
            max_attempts=lease.max_attempts,
            failure_class=failure_class,
            policy=self.config.policy,
            random=self.random,
        )
        params: dict[str, Any] = {
            "id": lease.job_id,
            "token": lease.token,
            "error": truncate(error),
            "failure_class": failure_class.value,
            "reason": reason,
        }
        if decision.terminal:
            if reason is None:
                exhausted = failure_class is FailureClass.TRANSIENT
                params["reason"] = (
                    self.table.reason_word("attempts_exhausted") if exhausted else truncate(error)
                )
            rows = self._run(self.sql.settle_failed, params, conn).rows
            retry_at = None
        else:
            params["retry_in_ms"] = decision.retry_in_ms
            rows = self._run(self.sql.settle_retry, params, conn).rows
            retry_at = rows[0][self.table.due] if rows else None
        if not rows:
            return None
        return FailureOutcome(terminal=decision.terminal, retry_at_ms=retry_at, attempts=lease.attempt)

    def settle_deferred(
        self, lease: Lease, until_ms: int, *, reason: str | None = None, conn: Connection | None = None
    ) -> FailureOutcome | None:
        """Put the job back until ``until_ms`` with the attempt refunded — or, for a job older
        than the deferral age cap, fail it as unrecoverable. None when the lease no longer holds."""
        params = {
            "id": lease.job_id,
            "token": lease.token,
            "until_ms": until_ms,
            "max_age_ms": self.config.defer_max_age_ms,
            "age_reason": self.table.reason_word("defer_age"),
            "error": reason,
        }
        rows = self._run(self.sql.settle_deferred, params, conn).rows
        if not rows:
            return None
        row = rows[0]
        if self.table.words.phase(row[self.table.status]) is Phase.FAILED:
            return FailureOutcome(terminal=True, retry_at_ms=None, attempts=int(row["attempts"]))
        return FailureOutcome(
            terminal=False, retry_at_ms=int(row[self.table.due]), attempts=int(row["attempts"])
        )

    def defer_lock_wait(self, lease: Lease, error: str) -> FailureOutcome | None:
        """The handler waited ``lock_timeout`` for a row another transaction holds (a slow one,
        or a lost host's not yet ended by the server): hand the job back for a little while
        with its attempt refunded. None when the lease no longer holds."""
        delay = LOCK_RETRY_MS + int(self.random() * LOCK_RETRY_MS)
        return self.settle_deferred(
            lease, self.clock() + delay, reason=truncate(f"{LOCK_WAIT_REASON}: {error}")
        )

    # ── recovery ─────────────────────────────────────────────────────────────

    def recover_expired(self) -> RecoverResult:
        """Return expired leases to ready, or fail them when their attempts are spent.

        Rows another transaction has locked (a settle in flight, or stalled mid-commit) are
        skipped, not waited for; the next sweep takes them if they are still expired.
        """
        params = {
            "limit": RECOVER_BATCH,
            "exhausted": self.table.reason_word("lease_exhausted"),
            "recovered": self.table.reason_word("recovered"),
        }
        failed_word = self.table.word(Phase.FAILED)
        requeued: list[str] = []
        failed: list[str] = []
        while True:
            rows = self._run(self.sql.recover_expired, dict(params)).rows
            for row in rows:
                (failed if row[self.table.status] == failed_word else requeued).append(row["id"])
            if len(rows) < RECOVER_BATCH:
                break
        if requeued or failed:
            log.warning(
                "memtasks.queue: %s: recovered %d expired leases (%d requeued, %d failed)",
                self.table.name,
                len(requeued) + len(failed),
                len(requeued),
                len(failed),
            )
        return RecoverResult(requeued=requeued, failed=failed)

    def release(self, leases: Sequence[Lease]) -> int:
        """Graceful shutdown: hand held jobs back at once, attempt refunded."""
        released = 0
        for start in range(0, len(leases), PAIRS_CHUNK):
            part = leases[start : start + PAIRS_CHUNK]
            released += self._run(self.sql.release_many, self._pairs(part)).rowcount
        return released

    # ── dispatch (the message is a hint: rows without one get one) ───────────

    def mark_for_dispatch(self, limit: int, *, redispatch_after_ms: int) -> list[R]:
        """Due rows the fleet may run that need a message, marked as dispatched now, most urgent first.

        A row needs one when none was published since it became ready, or the last one is
        older than ``redispatch_after_ms`` (lost with a broker flush or restart). A duplicate
        message is harmless: only one claim of the row can succeed.
        """
        params = {"limit": limit, "redispatch_after_ms": redispatch_after_ms}
        rows = self._run(self.sql.mark_for_dispatch, params).rows
        rows.sort(key=lambda r: (r["priority"], r[self.table.due]))
        return [self.decode(row) for row in rows]

    def forget_dispatch(self, job_ids: Sequence[str]) -> int:
        """A publish failed: let the next dispatch sweep publish these rows again."""
        if not job_ids:
            return 0
        return int(self._run(self.sql.forget_dispatch, {"ids": self._list(job_ids)}).rowcount)

    def postpone(self, job_id: str, delay_ms: int) -> bool:
        """Move a ready (unclaimed) job's due time ``delay_ms`` ahead; no attempt is spent."""
        return bool(self._run(self.sql.postpone, {"id": job_id, "delay_ms": delay_ms}).rowcount == 1)


__all__ = [
    "LOCK_RETRY_MS",
    "LOCK_WAIT_REASON",
    "FailureOutcome",
    "LeasedQueue",
    "QueueConfig",
    "RecoverResult",
    "truncate",
]
