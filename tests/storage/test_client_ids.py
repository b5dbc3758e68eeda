"""Jobs stored under the id a producer chose (``memtasks.client``), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from memtasks.domain.decay import DecayKind, DecaySpec, DecayState
from memtasks.domain.errors import ValidationError
from memtasks.domain.ids import new_decay_job_id, new_mem_tree_job_id
from memtasks.domain.jobs import JobStatus
from memtasks.domain.tree import extract_chunk_job
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.mem_tree_queue import REASON_DUPLICATE, MemTreeJobs
from memtasks.storage.tables import decay_jobs, mem_tree_jobs

pytestmark = pytest.mark.integration


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_job_is_stored_under_the_producers_id_once_however_often_it_is_delivered(
    jobs: MemTreeJobs, engine: Engine
) -> None:
    job_id = new_mem_tree_job_id()
    first = jobs.enqueue_as(extract_chunk_job("c1"), job_id, published=True)
    again = jobs.enqueue_as(extract_chunk_job("c1"), job_id, published=True)
    assert first.inserted and first.duplicate_of is None
    assert not again.inserted and again.duplicate_of is None, "a redelivery writes nothing"
    row = jobs.get(job_id)
    assert row is not None and row.status is JobStatus.READY and row.dedupe_key == "extract:c1"
    assert count(engine, mem_tree_jobs) == 1


def test_a_suppressed_duplicate_still_resolves_as_cancelled_naming_the_holder(
    jobs: MemTreeJobs, engine: Engine
) -> None:
    holder = jobs.enqueue(extract_chunk_job("c1"))
    assert holder is not None
    job_id = new_mem_tree_job_id()
    done = jobs.enqueue_as(extract_chunk_job("c1"), job_id)
    assert not done.inserted and done.duplicate_of == holder
    row = jobs.get(job_id)
    assert row is not None and row.status is JobStatus.CANCELLED
    assert row.last_error == f"duplicate of {holder} (dedupe key extract:c1)"
    assert row.failure_reason == REASON_DUPLICATE and row.completed_at_ms is not None
    again = jobs.enqueue_as(extract_chunk_job("c1"), job_id)
    assert not again.inserted and again.duplicate_of is None, "the redelivery finds the cancelled row"
    assert count(engine, mem_tree_jobs) == 2
    claimed = jobs.claim_next()
    assert claimed is not None and claimed.id == holder, "the cancelled row is never claimed"
    assert jobs.claim_next() is None


@pytest.mark.parametrize("bad", ["job:not-a-uuid", "dj_" + "0" * 32, "JOB:x", "", 7])
def test_a_malformed_id_is_refused_naming_job_id(jobs: MemTreeJobs, bad: object) -> None:
    with pytest.raises(ValidationError, match="job_id must look like job:<uuid>"):
        jobs.enqueue_as(extract_chunk_job("c1"), bad)  # type: ignore[arg-type]


def test_a_decay_job_under_the_producers_id_is_idempotent(engine: Engine) -> None:
    decay = DecayJobs(engine)
    spec = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_1", "mem_2"))
    job_id = new_decay_job_id()
    assert decay.enqueue_as(spec, job_id, created_by="agent")
    assert not decay.enqueue_as(spec, job_id, created_by="agent")
    row = decay.get(job_id)
    assert row is not None and row.state is DecayState.PENDING and row.created_by == "agent"
    assert count(engine, decay_jobs) == 1
    with pytest.raises(ValidationError, match="job_id must look like dj_"):
        decay.enqueue_as(spec, new_mem_tree_job_id(), created_by="agent")
