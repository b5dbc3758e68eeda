"""Process entry points for the concurrency tests (importable by a spawned child)."""

from __future__ import annotations

from threading import Barrier

from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs


def claim_until_empty(url: str, batch: int, start: Barrier | None = None) -> list[str]:
    """Claim and settle until nothing is left; the ids this process claimed. ``start``: wait
    for the other claimers there first (all ready, then all claim)."""
    jobs = MemTreeJobs(get_engine(url))
    if start is not None:
        start.wait(timeout=120)
    claimed: list[str] = []
    while True:
        got = jobs.claim_batch(batch) if batch > 1 else [j for j in [jobs.claim_next()] if j]
        if not got:
            return claimed
        claimed.extend(j.id for j in got)
        assert jobs.settle_done_many([j.lease for j in got]) == len(got)
