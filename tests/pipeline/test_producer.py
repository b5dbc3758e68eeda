"""The producer API against a real Redis broker and real databases."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select

from memtasks.config import load_settings
from memtasks.domain.errors import MalformedPayload
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.domain.tree import seal_job
from memtasks.producer import Producer
from memtasks.storage.engine import get_engine
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.tables import mem_tree_jobs as t
from memtasks.worker import names
from tests.pipeline.fleet import Fleet, fleet_env, wait_until

pytestmark = pytest.mark.integration


def queued(broker_url: str) -> int:
    """Messages waiting in memtasks' queues (every priority sub-queue)."""
    broker = redis.Redis.from_url(broker_url)
    keys = {k for q in names.QUEUES for k in [*broker.scan_iter(q), *broker.scan_iter(f"{q}:*")]}
    return sum(broker.llen(k) for k in keys if broker.type(k) == b"list")


def make_producer(db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch) -> Producer:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_BROKER_URL", broker_url)
    monkeypatch.setenv("MEMTASKS_LOCK_REDIS_URL", lock_url)
    return Producer(load_settings())


def rows(db_url: str) -> int:
    with get_engine(db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def test_enqueue_commits_then_publishes(
    db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = make_producer(db_url, broker_url, lock_url, monkeypatch)
    job_id = producer.enqueue(seal_job("t", 0))
    assert job_id is not None
    assert queued(broker_url) == 1
    row = producer.runtime.jobs.get(job_id)
    assert row is not None and row.dispatched_at_ms is not None
    assert producer.enqueue(seal_job("t", 0)) is None, "deduped while the first is ready"
    assert queued(broker_url) == 1


def test_enqueue_in_the_callers_transaction_commits_and_rolls_back_with_it(
    db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = make_producer(db_url, broker_url, lock_url, monkeypatch)
    engine = producer.runtime.engine

    def failing_caller() -> None:
        with engine.begin() as conn:
            producer.enqueue(seal_job("rolled", 0), conn=conn)
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError):
        failing_caller()
    assert rows(db_url) == 0 and queued(broker_url) == 0

    with engine.begin() as conn:
        ids = producer.enqueue_many([seal_job("kept", 0), seal_job("kept", 1)], conn=conn)
    assert rows(db_url) == 2 and queued(broker_url) == 0, "nothing published before the commit"
    row = producer.runtime.jobs.get(str(ids[0]))
    assert row is not None and row.dispatched_at_ms is None, "left for the dispatch sweep"
    assert producer.publish(ids) == 2
    assert queued(broker_url) == 2


def test_an_unreachable_broker_loses_nothing(
    db_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = make_producer(db_url, "redis://127.0.0.1:1/0", lock_url, monkeypatch)
    job_id = producer.enqueue(seal_job("t", 0))
    assert job_id is not None
    row = producer.runtime.jobs.get(job_id)
    assert row is not None and (row.status, row.dispatched_at_ms) == ("ready", None)
    [again] = producer.runtime.jobs.mark_for_dispatch(10, redispatch_after_ms=60_000)
    assert again.id == job_id, "the dispatch sweep publishes it"


def test_a_malformed_payload_is_refused_before_anything_is_written(
    db_url: str, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = make_producer(db_url, broker_url, lock_url, monkeypatch)
    with pytest.raises(MalformedPayload, match="'item_id' must be a non-empty string"):
        producer.enqueue_many(
            [seal_job("ok", 0), NewJob(JobKind.APPEND_BUFFER, {"tree_id": "t", "level": 0})]
        )
    assert rows(db_url) == 0 and queued(broker_url) == 0


@pytest.mark.slow
def test_retrieval_failures_travel_as_celery_batches(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    fleet.worker()
    producer = make_producer(db_url, broker_url, lock_url, monkeypatch)
    logger = producer.retrieval_failure_logger()
    for i in range(50):
        assert logger.log(RetrievalFailure.new("no_hit", "vector", f"query {i}", conversation_id="conv"))
    assert logger.shutdown(timeout=10)

    def written() -> int:
        with get_engine(db_url).connect() as conn:
            return int(conn.execute(select(func.count()).select_from(memory_retrieval_failures)).scalar_one())

    wait_until(lambda: written() == 50, 60, "50 retrieval failures written by the worker", fleet)
    assert logger.stats().dropped == 0
