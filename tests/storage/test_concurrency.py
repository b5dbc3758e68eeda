"""Several processes claiming from one table: every job exactly once, none lost."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest

from memtasks.domain.jobs import JobKind, JobStatus, NewJob
from memtasks.storage.mem_tree_queue import MemTreeJobs
from tests.storage._claimers import claim_until_empty

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("batch", [1, 10])
def test_four_processes_claim_each_job_exactly_once(db_url: str, engine, batch: int) -> None:  # type: ignore[no-untyped-def]
    jobs = MemTreeJobs(engine)
    kinds = list(JobKind)
    ids = jobs.enqueue_many([NewJob(kinds[i % len(kinds)], {"i": i}) for i in range(2_000)])
    assert all(ids)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(4) as pool:
        start = manager.Barrier(4)  # no claimer starts before all four are ready
        per_process = pool.starmap(claim_until_empty, [(db_url, batch, start)] * 4, chunksize=1)
    claimed = Counter(job_id for ids_ in per_process for job_id in ids_)
    assert len(claimed) == 2_000, "no job lost"
    assert max(claimed.values()) == 1, "no job claimed twice"
    assert set(claimed) == set(ids)
    assert sum(1 for ids_ in per_process if ids_) >= 2, "the work was shared"
    assert jobs.admin.count_by_state()[JobStatus.DONE] == 2_000
