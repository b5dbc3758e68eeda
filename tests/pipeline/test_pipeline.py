"""The pipeline end to end: real `celery worker`/`celery beat` processes, real Redis, real databases."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from memtasks.storage.engine import get_engine
from memtasks.storage.tables import mem_tree_jobs as t
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def count_status(db_url: str, status: str, kind: str | None = None) -> int:
    stmt = select(func.count()).select_from(t).where(t.c.status == status)
    if kind is not None:
        stmt = stmt.where(t.c.kind == kind)
    with get_engine(db_url).connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def run_producer(broker: str, count: int, prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/pipeline/_producer.py"), broker, str(count), prefix],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sent {count}"


def test_a_producer_that_knows_only_task_names(
    fleet: Fleet, db_url: str, broker_url: str, lock_url: str
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    fleet.worker(concurrency=4)
    run_producer(broker_url, 1000, "p")
    wait_until(lambda: count_status(db_url, "done") == 1000, 180, "1,000 jobs done", fleet)
    with get_engine(db_url).connect() as conn:
        rows = conn.execute(select(t.c.kind, t.c.attempts, t.c.status)).all()
    assert len(rows) == 1000
    assert {(r.kind, r.attempts, r.status) for r in rows} == {("seal", 1, "done")}
