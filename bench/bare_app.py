"""The baseline: a bare Celery app with one no-op task and memtasks' worker settings.

Each run counts itself in Redis (one INCR), so the benchmark knows when the backlog is
drained without a result backend — the same bookkeeping cost memtasks' probe pays.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("bare", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bare",
)

_counter: redis.Redis | None = None


@app.task(name="bench.noop")
def noop() -> None:
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ.get("BENCH_COUNTER_URL", "redis://127.0.0.1:6379/12"))
    _counter.incr("bench:bare:done")
