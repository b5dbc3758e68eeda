"""A handler is told when its job was taken over, and can stop early (real database, real
heartbeats): its writes are rolled back at the fenced settle either way."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, update

from memtasks.domain.jobs import JobKind, NewJob
from memtasks.services.holding import Holding
from memtasks.services.mem_tree import HandlerContext, HandlerRegistry, MemTreeRunner, Outcome
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.tables import mem_tree_jobs

pytestmark = pytest.mark.integration


def test_a_handler_learns_its_lease_was_taken_over_and_stops_early(engine: Engine) -> None:
    jobs = MemTreeJobs(engine)
    seen: dict[str, float] = {}

    def patient(ctx: HandlerContext, _payload: object) -> None:
        # Another worker takes the job over (what a recovery and a new claim do to the row).
        with engine.begin() as conn:
            conn.execute(
                update(mem_tree_jobs).where(mem_tree_jobs.c.id == ctx.job.id).values(lease_token="other")
            )
        started = time.monotonic()
        seen["lost"] = float(ctx.lease.wait_lost(30))
        seen["waited_s"] = time.monotonic() - started

    registry = HandlerRegistry.default().override(JobKind.SEAL, patient, llm_bound=False)
    runner = MemTreeRunner(engine, jobs, registry=registry, holding=Holding(heartbeat_s=0.05))
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    assert job_id is not None

    result = runner.run_by_id(job_id)

    assert seen["lost"] == 1.0, "the handler was told"
    assert seen["waited_s"] < 10, "well before its own patience ran out"
    assert result is not None and result.outcome is Outcome.FENCED
