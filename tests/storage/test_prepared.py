"""Which statements PostgreSQL may prepare: one-row statements yes, statements over many rows never.

A prepared statement switches to a generic plan after five runs; for a settle of hundreds of
rows that plan loops over the lease index once per row. The queue engine therefore plans its
many-row statements for each call.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from memtasks.domain.jobs import JobKind, NewJob
from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.migrate import upgrade
from memtasks.storage.queue.statements import MANY_ROWS, MOVES, statements
from memtasks.storage.queue.table import MEM_TREE

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_every_many_row_statement_is_planned_per_call() -> None:
    built = statements(MEM_TREE, "postgresql")
    assert {s.name for s in built.all() if not s.prepared} == {n.lower() for n in MANY_ROWS}
    assert set(MOVES) > MANY_ROWS


def test_batch_statements_are_never_prepared_while_one_row_ones_are(pg_schema: str) -> None:
    engine = get_engine(pg_schema, EngineOptions(pool_size=1))
    upgrade(engine)
    jobs = MemTreeJobs(engine)
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}) for i in range(40)])
    for _ in range(8):  # psycopg prepares a statement on its sixth run
        batch = jobs.claim_batch(2)
        assert jobs.settle_done_many([job.lease for job in batch]) == 2
    for _ in range(8):
        job = jobs.claim_next()
        assert job is not None and jobs.settle_done(job.lease)
    with engine.connect() as conn:  # pool_size 1, overflow 1: the connection the queue used
        prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    assert any("lease_token = %" in s or "lease_token = $" in s for s in prepared), prepared
    assert not any("unnest" in s for s in prepared), "settle_done_many was prepared"
    assert not any("SKIP LOCKED" in s for s in prepared), "claim_batch was prepared"
