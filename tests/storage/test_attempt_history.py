"""Who holds a job, and what each attempt did: a takeover from a lost worker stays visible."""

from __future__ import annotations

import json
import os
import socket

import pytest

from memtasks.domain.clock import FrozenClock
from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.services.job_view import job_view
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue.sql_postgresql import HISTORY_KEPT

pytestmark = pytest.mark.integration

ME = f"{socket.gethostname()}:{os.getpid()}"


def _history(jobs: MemTreeJobs | DecayJobs, job_id: str) -> list[dict[str, object]]:
    row = jobs.get(job_id)
    assert row is not None
    return list(json.loads(row.attempt_history or "[]"))


def test_a_claim_names_its_worker_and_a_recovered_lease_stays_in_the_history(
    jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    assert job_id is not None
    first = jobs.claim(job_id, lease_ms=1_000)
    assert first is not None and first.claimed_by == ME
    clock.advance(2_000)
    assert jobs.recover_expired().requeued == [job_id]  # its worker was lost

    second = jobs.claim(job_id)
    assert second is not None and second.attempts == 2
    assert jobs.settle_done(second.lease)

    history = _history(jobs, job_id)
    assert [(e["attempt"], e["outcome"], e["worker"]) for e in history] == [
        (1, "lease_expired", ME),
        (2, "done", ME),
    ]
    assert history[0]["error"] == "recovered_from_stale_lock"
    assert history[0]["started_ms"] == first.started_at_ms
    assert history[0]["ended_ms"] == first.started_at_ms + 2_000
    view = job_view(jobs.get(job_id))  # type: ignore[arg-type]
    assert view["claimed_by"] == ME
    assert [e["outcome"] for e in view["attempt_history"]] == ["lease_expired", "done"]
    assert view["attempt_history"][0]["started_at"].endswith("Z")


def test_every_way_an_attempt_ends_is_kept_with_its_error(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    assert job_id is not None
    job = jobs.claim(job_id)
    assert job is not None
    assert jobs.settle_failed(job.lease, "boom: the first", FailureClass.TRANSIENT) is not None
    clock.advance(3_600_000)
    job = jobs.claim(job_id)
    assert job is not None
    assert jobs.defer_lock_wait(job.lease, "canceling statement due to lock timeout") is not None
    clock.advance(60_000)
    job = jobs.claim(job_id)
    assert job is not None
    assert jobs.release([job.lease]) == 1
    job = jobs.claim(job_id)
    assert job is not None
    assert jobs.settle_failed(job.lease, "bad input", FailureClass.UNRECOVERABLE) is not None

    history = _history(jobs, job_id)
    assert [(e["attempt"], e["outcome"]) for e in history] == [
        (1, "retry"),
        (2, "deferred"),
        (2, "released"),
        (2, "failed"),
    ]
    assert history[0]["error"] == "boom: the first"
    assert str(history[1]["error"]).startswith("lock_wait: canceling statement")
    assert history[2]["error"] is None
    assert history[3]["error"] == "bad input"
    assert all(e["worker"] == ME for e in history)


def test_the_history_keeps_the_last_attempts_only(jobs: MemTreeJobs) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    assert job_id is not None
    for _ in range(HISTORY_KEPT + 5):
        job = jobs.claim(job_id)
        assert job is not None
        assert jobs.release([job.lease]) == 1
    history = _history(jobs, job_id)
    assert len(history) == HISTORY_KEPT


def test_decay_jobs_keep_the_same_history(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    decay = DecayJobs(engine, clock=clock)
    job_id = decay.enqueue(DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_a",)), created_by="op")
    job = decay.claim_by_id(job_id, lease_ms=1_000)
    assert job is not None and job.claimed_by == ME
    clock.advance(2_000)
    decay.recover_expired()
    job = decay.claim_by_id(job_id)
    assert job is not None
    assert decay.settle_completed(job.lease, None)
    history = _history(decay, job_id)
    assert [(e["attempt"], e["outcome"]) for e in history] == [(1, "lease_expired"), (2, "done")]
    assert history[0]["error"] == "decay.runner.recovered_from_stale_lock"
