"""Process entry points for the concurrency tests (importable by a spawned child)."""

from __future__ import annotations

from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs


def claim_until_empty(url: str, batch: int) -> list[str]:
    """Claim and settle until nothing is left; the ids this process claimed."""
    jobs = MemTreeJobs(get_engine(url))
    claimed: list[str] = []
    while True:
        got = jobs.claim_batch(batch) if batch > 1 else [j for j in [jobs.claim_next()] if j]
        if not got:
            return claimed
        claimed.extend(j.id for j in got)
        assert jobs.settle_done_many([j.lease for j in got]) == len(got)
