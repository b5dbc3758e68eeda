"""The Celery configuration memtasks runs with, as plain data from :class:`Settings`.

Workers, beat and Flower get it through :func:`memtasks.worker.app.create_app`; a producer
that only publishes gets it through :func:`client_app` (with settings) or :func:`publisher_conf`
(with a broker URL only: :mod:`memtasks.client`) — the same queues, priorities and
serializer, no tasks registered, nothing patched. This module imports neither the settings
(pydantic) nor a database library: a broker-only producer imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery
from kombu.entity import Exchange, Queue

from memtasks.domain.sweeps import SWEEP_TASKS
from memtasks.worker import names
from memtasks.worker.routing import MAX_PRIORITY

if TYPE_CHECKING:
    from memtasks.config import Settings

VISIBILITY_TIMEOUT_S = 3600.0
"""Redis's visibility timeout for a producer that has no settings (a publisher never waits on it)."""
PUBLISH_TIMEOUT_S = 4.0
"""How long a producer without settings waits for the broker when it connects."""
BROKER_SOCKET_TIMEOUT_S = 5.0
"""A producer without settings gives up on a Redis command with no answer after this long."""
BROKER_HEALTH_CHECK_S = 5
"""A producer without settings pings a Redis connection idle this long before using it."""


def broker_liveness(socket_timeout_s: float, health_check_s: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The transport options and the Celery settings that notice a broker connection that went
    silent without closing (a NAT or proxy entry that died, a broker that hangs): TCP keepalives
    end it where the kernel can tell; a Redis command with no answer fails after
    ``socket_timeout_s``; a connection idle past ``health_check_s`` is pinged before use, and
    kombu drops a consumer's BRPOP connection whose reply is overdue by ``health_check_s``
    (BRPOP replies within a second on a live server), so a silenced consumer reconnects within
    about ``1 + 2 * health_check_s`` seconds; RabbitMQ connections heartbeat every
    ``health_check_s``. 0 leaves each to the libraries (no socket timeout: wait for ever;
    kombu's check every 25 s; Celery's heartbeat every 120 s)."""
    options: dict[str, Any] = {"socket_keepalive": True}
    conf: dict[str, Any] = {}
    if socket_timeout_s > 0:
        options["socket_timeout"] = socket_timeout_s
    if health_check_s > 0:
        options["health_check_interval"] = health_check_s
        conf["broker_heartbeat"] = health_check_s
    return options, conf


def task_queues() -> list[Queue]:
    """Every queue a worker may consume, declared alike by workers and producers: memtasks'
    queues with priorities 0–9 (``x-max-priority`` 9 on RabbitMQ), and Celery's default queue
    ``celery`` exactly as a plain Celery producer declares it (no arguments), so a
    ``send_task`` without ``queue=`` meets a queue that is consumed."""
    own = [
        Queue(q, Exchange(q, type="direct"), routing_key=q, queue_arguments={"x-max-priority": MAX_PRIORITY})
        for q in names.QUEUES
    ]
    plain = Queue(names.CELERY, Exchange(names.CELERY, type="direct"), routing_key=names.CELERY)
    return [*own, plain]


def publisher_conf(
    *,
    visibility_timeout_s: float,
    publish_timeout_s: float,
    socket_timeout_s: float = BROKER_SOCKET_TIMEOUT_S,
    health_check_s: int = BROKER_HEALTH_CHECK_S,
) -> dict[str, Any]:
    """What a process that publishes must share with the workers: JSON, the queues as they are
    declared, the Redis priority sub-queues (their steps and separator name the Redis lists),
    publishes that fail fast, and connections that notice a silent broker
    (:func:`broker_liveness`)."""
    liveness, liveness_conf = broker_liveness(socket_timeout_s, health_check_s)
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": names.DEFAULT,
        "task_queues": task_queues(),
        "task_routes": {task: {"queue": names.MAINTENANCE} for task in SWEEP_TASKS.values()},
        # No ``task_queue_max_priority``: Celery would add ``x-max-priority`` to every queue,
        # ``celery`` included; memtasks' own queues carry it in their declaration instead.
        "task_default_priority": MAX_PRIORITY // 2,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout_s,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
            **liveness,
        },
        **liveness_conf,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": publish_timeout_s,
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


def celery_conf(settings: Settings) -> dict[str, Any]:
    """:func:`publisher_conf`, and for workers: late acks with ``reject_on_worker_lost`` (a
    killed worker's message comes back), a few messages reserved per process (see
    :func:`prefetch_of`), a memory ceiling per child."""
    return {
        **publisher_conf(
            visibility_timeout_s=settings.visibility_timeout_s,
            publish_timeout_s=settings.publish_timeout_s,
            socket_timeout_s=settings.broker_socket_timeout_s,
            health_check_s=settings.broker_health_check_s,
        ),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A failed job's message is acknowledged (Celery's default, said here because the
        # FAILURE a failed job shows in Flower relies on it): its row decides when it comes back.
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": prefetch_of(settings),
        # A malformed message is discarded with a log line instead of stopping the worker.
        "worker_consumer": "memtasks.worker.consumer:GuardedConsumer",
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_kb,
        # Events cost three broker writes per task; Flower turns them on while it watches.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
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


def publisher_app(broker_url: str, *, name: str = "memtasks-client") -> Celery:
    """A Celery app that only publishes, for a producer that has a broker URL and no settings."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        publisher_conf(visibility_timeout_s=VISIBILITY_TIMEOUT_S, publish_timeout_s=PUBLISH_TIMEOUT_S)
    )
    return app


def client_app(settings: Settings) -> Celery:
    """A Celery app that only publishes (a producer's): memtasks' broker configuration, no tasks."""
    app = Celery("memtasks-client", broker=settings.broker_url, set_as_current=False)
    app.conf.update(celery_conf(settings))
    return app


__all__ = [
    "PREFETCH",
    "celery_conf",
    "client_app",
    "prefetch_of",
    "publisher_app",
    "publisher_conf",
    "task_queues",
]
