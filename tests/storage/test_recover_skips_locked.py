"""Recovery does not wait behind a row another transaction holds.

A worker paused (or stalled) between its settle's ``UPDATE`` and its ``COMMIT`` keeps that
one row locked. ``recover_expired`` used to update every expired row in one statement that
waited for that lock, so the whole fleet's expired leases stayed stranded until the stalled
worker woke up. It now skips locked rows (``SKIP LOCKED``) and recovers the rest.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from memtasks.domain.clock import FrozenClock
from memtasks.domain.tree import seal_job
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue import QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_recovery_skips_a_row_locked_by_a_stalled_settle(pg_schema: str) -> None:
    engine = get_engine(pg_schema)
    clock = FrozenClock()
    jobs = MemTreeJobs(engine, clock=clock, config=QueueConfig(lease_ms=1_000))
    ids = [jobs.enqueue(seal_job(f"t{i}", 0)) for i in range(2)]
    claimed = [jobs.claim(job_id) for job_id in ids if job_id is not None]
    assert all(job is not None for job in claimed) and len(claimed) == 2
    clock.advance(5_000)  # both leases expired
    stalled, other = claimed
    assert stalled is not None and other is not None

    with engine.connect() as holder:  # a settle that took the row lock, then stalled
        holder.execute(text("SELECT id FROM mem_tree_jobs WHERE id = :id FOR UPDATE"), {"id": stalled.id})
        result: list[object] = []
        recovery = threading.Thread(target=lambda: result.append(jobs.recover_expired()), daemon=True)
        recovery.start()
        recovery.join(timeout=10)
        waited = recovery.is_alive()
        holder.rollback()
    recovery.join(timeout=10)

    assert not waited, "recovery waited for the stalled row's lock"
    [recovered] = result
    assert recovered.requeued == [other.id]  # type: ignore[attr-defined]
    assert jobs.recover_expired().requeued == [stalled.id], "the next sweep takes the row once it is free"
