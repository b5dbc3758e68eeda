"""The Celery configuration memtasks runs with, as plain data from :class:`Settings`.

Workers, beat and Flower get it through :func:`memtasks.worker.app.create_app`; a producer
that only publishes gets it through :func:`client_app` — the same queues, priorities and
serializer, no tasks registered, nothing patched.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from memtasks.config import Settings
from memtasks.domain.sweeps import SWEEP_TASKS
from memtasks.worker import names
from memtasks.worker.routing import MAX_PRIORITY


def celery_conf(settings: Settings) -> dict[str, Any]:
    """JSON only (pickle refused both ways), late acks with ``reject_on_worker_lost`` (a killed
    worker's message comes back), a few messages reserved per process (see
    :func:`prefetch_of`), a memory ceiling per child, priorities 0–9 on every queue,
    publishes that fail fast."""
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": prefetch_of(settings),
        # A malformed message is discarded with a log line instead of stopping the worker.
        "worker_consumer": "memtasks.worker.consumer:GuardedConsumer",
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        # Events cost three broker writes per task; Flower turns them on while it watches.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "task_default_queue": names.DEFAULT,
        "task_queues": [
            Queue(
                q, Exchange(q, type="direct"), routing_key=q, queue_arguments={"x-max-priority": MAX_PRIORITY}
            )
            for q in names.QUEUES
        ],
        "task_routes": {task: {"queue": names.MAINTENANCE} for task in SWEEP_TASKS.values()},
        "task_queue_max_priority": MAX_PRIORITY,
        "task_default_priority": MAX_PRIORITY // 2,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.publish_timeout_s,
        # A publish that cannot reach the broker fails fast: the row is committed and the
        # dispatch sweep publishes it later, so waiting on the broker gains nothing.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "timezone": "UTC",
        "enable_utc": True,
    }


PREFETCH = 4
"""Messages a worker process reserves ahead when nothing says otherwise. While a process
runs a job, the worker's main process already holds the next message, so fetching and
acknowledging messages overlaps the jobs (one per process: a job's process waited about as
long for its next message as it spent on the job)."""
PREFETCH_WITH_LLM = 1
"""With an LLM behind the text models a job can take minutes; messages reserved behind it
would wait that long while other workers are idle."""


def prefetch_of(settings: Settings) -> int:
    """``MEMTASKS_WORKER_PREFETCH`` when set, else :data:`PREFETCH` (:data:`PREFETCH_WITH_LLM`
    when the text models call an LLM). A reserved message claims no row: another worker
    takes the job when it is redispatched, and the late message finds it gone."""
    if settings.worker_prefetch is not None:
        return settings.worker_prefetch
    return PREFETCH_WITH_LLM if settings.tree_uses_llm else PREFETCH


def client_app(settings: Settings) -> Celery:
    """A Celery app that only publishes (a producer's): memtasks' broker configuration, no tasks."""
    app = Celery("memtasks-client", broker=settings.broker_url, set_as_current=False)
    app.conf.update(celery_conf(settings))
    return app


__all__ = ["PREFETCH", "celery_conf", "client_app", "prefetch_of"]
