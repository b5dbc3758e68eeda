"""The baseline: a bare Celery app on memtasks' worker settings (JSON, late acks, the same
messages reserved per process, task events as memtasks' workers send them: off unless
``MEMTASKS_TASK_EVENTS``).

``bench.noop`` does nothing; ``bench.write`` inserts one row into ``bench_effects``
(autocommit, on a connection of the process). The chunked tasks carry many jobs in one
message and run the handler for each: ``bench.write_chunk`` writes its rows in one
transaction, as a memtasks drain commits its batch. No task counts itself: the harness reads
the broker's lists to know when the backlog is done.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from memtasks.worker.conf import PREFETCH

app = Celery("bare", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("MEMTASKS_WORKER_PREFETCH", PREFETCH)),
    worker_send_task_events=os.environ.get("MEMTASKS_TASK_EVENTS", "false").lower() in {"1", "true", "yes"},
    task_default_queue="bare",
)

_db: list[Any] = []


def _conn() -> Any:
    if not _db:
        import psycopg

        _db.append(psycopg.connect(os.environ["BENCH_EFFECTS_DSN"], autocommit=True))
    return _db[0]


@app.task(name="bench.noop")
def noop(job_id: str) -> None:
    return None


@app.task(name="bench.write")
def write(job_id: str) -> None:
    _conn().execute("INSERT INTO bench_effects (job_id) VALUES (%s)", (job_id,))


@app.task(name="bench.noop_chunk")
def noop_chunk(job_ids: list[str]) -> None:
    for job_id in job_ids:
        noop(job_id)


@app.task(name="bench.write_chunk")
def write_chunk(job_ids: list[str]) -> None:
    conn = _conn()
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany("INSERT INTO bench_effects (job_id) VALUES (%s)", [(i,) for i in job_ids])
