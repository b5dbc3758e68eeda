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
    claims = [s for s in prepared if "SKIP LOCKED" in s]
    assert claims and all("LIMIT 1 " in s for s in claims), "claim_batch was prepared"


def test_a_claim_commits_without_waiting_for_the_flush_and_a_settle_waits(pg_schema: str) -> None:
    """The claim's own transaction turns ``synchronous_commit`` off; nothing else does."""
    engine = get_engine(pg_schema, EngineOptions(pool_size=1))
    upgrade(engine)
    built = statements(MEM_TREE, "postgresql")
    unflushed = {s.name for s in built.all() if "synchronous_commit" in s.sql}
    assert unflushed == {"claim_by_id", "claim_batch", "claim_next"}
    jobs = MemTreeJobs(engine)
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0})])
    params = {
        "now": None,
        "limit": 1,
        "kinds": None,
        "lease_ms": 60_000,
        "token": "t" * 32,
        "worker": "host:1",
    }
    with engine.begin() as conn:  # the setting lasts to the end of the transaction it ran in
        conn.exec_driver_sql(built.claim_next.sql, params).all()
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    job = jobs.claim_next()
    assert job is None  # claimed above; committed
    with engine.connect() as conn:
        running = conn.execute(text("SELECT count(*) FROM mem_tree_jobs WHERE status = 'running'")).scalar()
    assert running == 1
