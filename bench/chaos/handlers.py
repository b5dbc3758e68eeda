"""The handlers the chaos fleet runs (``MEMTASKS_HANDLERS=bench.chaos.handlers:build_registry``).

Every memory-tree kind runs :func:`effect`. It first appends one line to this process's
execution log (``$CHAOS_EXEC_DIR/exec-<pid>.jsonl``, one ``write`` per line, so a line
written before a ``kill -9`` is kept): job, its ``chaos_n``, attempt, lease token, claim time, lease expiry.
Every execution is counted there, including those whose transaction rolls back. Then,
as the payload asks, it sleeps (``slow_ms``, on attempts up to ``slow_attempts``), fails
its first attempt (``fail_first``) or every attempt (``fail_always``: unrecoverable, the job
ends failed as planned), and writes one row to ``chaos_effects`` — in the
job's own transaction (``ctx.conn``), so it commits with the settle or not at all. With
``followup`` it also enqueues one ``append_buffer`` job in the same transaction.

``chaos_effects`` has no unique constraint on purpose: a job whose effect committed twice
shows up in ``GROUP BY job_id HAVING count(*) > 1``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, MetaData, String, Table, insert

from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry

EXEC_DIR_ENV = "CHAOS_EXEC_DIR"
PLANNED_FAILURE = "chaos.planned_failure"
FOLLOWUP_TREE = "chaos-followups"

metadata = MetaData()
chaos_effects = Table(
    "chaos_effects",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("lease_token", String(64)),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("chaos_effects_job", "job_id"),  # not unique: doubles must be countable
)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)


class PlannedFailure(RuntimeError):
    """The transient failure a ``fail_first`` job raises on its first attempt."""


_log: tuple[int, int] | None = None  # (pid, fd): reopened in a forked child


def _log_fd() -> int:
    global _log
    pid = os.getpid()
    if _log is None or _log[0] != pid:
        path = os.path.join(os.environ[EXEC_DIR_ENV], f"exec-{pid}.jsonl")
        _log = (pid, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    return _log[1]


def record_execution(ctx: HandlerContext, n: object, slow_ms: int) -> None:
    job = ctx.job
    line = {
        "job": job.id,
        "n": n,
        "kind": job.kind,
        "attempt": job.attempts,
        "token": job.lease_token,
        "claimed_at": job.started_at_ms,
        "locked_until": job.locked_until_ms,
        "pid": os.getpid(),
        "at": ctx.now(),
        "slow_ms": slow_ms,
    }
    os.write(_log_fd(), (json.dumps(line, separators=(",", ":")) + "\n").encode())


def write_effect(ctx: HandlerContext) -> None:
    """The job's one effect row, in its own transaction (committed with the settle or never)."""
    job = ctx.job
    ctx.conn.execute(
        insert(chaos_effects).values(
            job_id=job.id,
            kind=job.kind,
            lease_token=job.lease_token,
            attempt=job.attempts,
            pid=os.getpid(),
            at_ms=ctx.now(),
        )
    )


def effect(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    job = ctx.job
    slow_attempts = payload.get("slow_attempts")
    slow_ms = int(payload.get("slow_ms", 0))
    if slow_attempts is not None and job.attempts > int(slow_attempts):
        slow_ms = 0
    record_execution(ctx, payload.get("chaos_n"), slow_ms)
    if slow_ms:
        time.sleep(slow_ms / 1000)
    if payload.get("fail_always"):
        raise ValidationError(f"chaos: {job.id} fails for good as planned", code=PLANNED_FAILURE)
    if payload.get("fail_first") and job.attempts == 1:
        raise PlannedFailure(f"chaos: {job.id} fails its first attempt as planned")
    write_effect(ctx)
    if payload.get("followup"):
        ctx.enqueue(
            NewJob(
                JobKind.APPEND_BUFFER,
                {"tree_id": FOLLOWUP_TREE, "level": 0, "item_id": job.id, "chaos_parent": job.id},
                max_attempts=job.max_attempts,
            )
        )
    return None


def build_registry() -> HandlerRegistry:
    registry = HandlerRegistry.default()
    for kind in JobKind:
        registry = registry.override(kind, effect, llm_bound=False)
    return registry
