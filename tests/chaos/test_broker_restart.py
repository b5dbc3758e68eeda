"""A worker holding an unacknowledged message survives a restart of its Redis broker.

kombu's Redis channel used to stop closing half-way when the broker vanished under its
``BRPOP``; Celery's reconnect then hit ``AttributeError`` and the worker exited
("Unrecoverable error") on every broker restart (``memtasks.worker.broker`` fixes it).
The broker here is a private ``redis-server``: the shared one is never restarted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.chaos.redis_server import PrivateRedis, find_redis_server
from memtasks.config import load_settings
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.domain.tree import seal_job
from memtasks.producer import Producer
from memtasks.storage.engine import get_engine
from memtasks.storage.rows import reading
from memtasks.storage.tables import mem_tree_jobs as t
from tests.pipeline.fleet import Fleet, fleet_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def count(db_url: str, status: str) -> int:
    with reading(get_engine(db_url)) as conn:  # a WAL snapshot: never waits for a job's write lock
        return int(conn.execute(select(func.count()).where(t.c.status == status)).scalar_one())


def test_a_worker_with_a_job_in_flight_survives_a_broker_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.fail("this test restarts a private redis-server: install it (apt-get install redis-server)")
    redis = PrivateRedis(tmp_path / "redis", binary)
    redis.start()
    fleet = Fleet(tmp_path, env={})
    try:
        db_url = f"sqlite:///{tmp_path}/memtasks.sqlite3"
        fleet.env = fleet_env(
            database_url=db_url,
            broker_url=f"redis://127.0.0.1:{redis.port}/0",
            lock_redis_url=f"redis://127.0.0.1:{redis.port}/1",
        )
        for key, value in fleet.env.items():
            if key.startswith("MEMTASKS_"):
                monkeypatch.setenv(key, value)
        fleet.worker("w1", concurrency=2)  # one pool process idle: the consumer sits in BRPOP
        producer = Producer(load_settings())
        try:
            producer.enqueue(
                NewJob(JobKind.REEMBED_BACKFILL, {"probe": "long", "sleep_s": 4, "sleep_always": True})
            )
            wait_until(lambda: count(db_url, "running") == 1, 60, "the long job running", fleet)

            redis.restart(down_s=1.0)  # its message is unacknowledged while the broker is gone

            producer.enqueue(seal_job("after-restart", 0))
            wait_until(lambda: count(db_url, "done") == 2, 60, "both jobs done after the restart", fleet)
        finally:
            producer.close()
        log = fleet.log("w1")
        assert "Unrecoverable error" not in log, log[-3000:]
        assert fleet.processes["w1"].poll() is None, "the worker exited"
    finally:
        fleet.stop_all()
        redis.stop()
