"""The two job tables as one test subject: the queue-contract and lifecycle tests run every
case against both (``memtasks.storage.queue`` serves both through their adapters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table

from memtasks.domain.clock import Clock
from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue import LeasedQueue, QueueConfig, QueueTable

TABLES = ["mem_tree", "decay"]


@dataclass
class Subject:
    name: str
    queue: Any  # MemTreeJobs | DecayJobs: LeasedQueue with the table's own enqueue

    @property
    def table(self) -> QueueTable:
        return self.queue.table  # type: ignore[no-any-return]

    @property
    def sa_table(self) -> Table:
        return self.table.table

    def add(self, n: int = 1, *, key: str | None = None, max_attempts: int | None = None) -> list[str]:
        """``n`` new ready jobs, due now; their ids."""
        if self.name == "mem_tree":
            jobs = [
                NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}, key, None, max_attempts)
                for i in range(n)
            ]
            return [i for i in self.queue.enqueue_many(jobs) if i is not None]
        spec = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_a", "mem_b"))
        return [self.queue.enqueue(spec, created_by="test") for _ in range(n)]

    def row(self, job_id: str) -> dict[str, Any]:
        with self.queue.engine.connect() as conn:
            found = conn.execute(self.sa_table.select().where(self.sa_table.c.id == job_id)).first()
        assert found is not None, job_id
        return dict(found._mapping)

    def word(self, job_id: str) -> str:
        return str(self.row(job_id)[self.table.status])


def subject(
    name: str, engine: Engine, *, clock: Clock | None = None, config: QueueConfig | None = None
) -> Subject:
    queue: LeasedQueue[Any]
    if name == "mem_tree":
        queue = MemTreeJobs(engine, clock=clock, config=config)
    else:
        queue = DecayJobs(engine, clock=clock, config=config)
    return Subject(name, queue)


def claim_until_empty(url: str, table: str, batch: int, start: Any, results: Any) -> None:
    """Claim and settle until nothing is left, starting when every claimer is ready; put the
    ids this process claimed on ``results`` (spawned children)."""
    from memtasks.storage.engine import get_engine

    queue = subject(table, get_engine(url)).queue
    queue.admin.count_total()  # connected, migrated: ready to claim
    start.wait()
    claimed: list[str] = []
    while True:
        got = queue.claim_batch(batch)
        if not got:
            results.put(claimed)
            return
        claimed.extend(j.id for j in got)
        assert queue.settle_done_many([j.lease for j in got]) == len(got)
