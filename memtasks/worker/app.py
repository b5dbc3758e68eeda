"""The Celery app: ``celery -A memtasks.worker.app worker|beat|flower``.

Built from :class:`~memtasks.config.Settings` with no I/O at import: nothing connects
until a worker starts or a message is published. JSON only (pickle refused both ways),
late acks with ``reject_on_worker_lost`` (a killed worker's message comes back), one
message prefetched per process, a memory ceiling per child, the SQLAlchemy engines
disposed in each forked child, and held leases released at a graceful shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery, signals
from kombu.entity import Exchange, Queue

import beat_schedule
from memtasks.config import Settings, load_settings
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Followup
from memtasks.services.pipeline import Pipeline
from memtasks.services.runtime import open_runtime
from memtasks.storage.engine import dispose_all
from memtasks.worker import broker, names
from memtasks.worker.routing import KIND_QUEUES, MAX_PRIORITY, decay_priority, message_priority, queue_for

log = logging.getLogger("memtasks.worker")


class CeleryPublisher:
    """Publishes run messages: ``send_task(name, args=[job_id], queue, priority)``."""

    def __init__(self, app: Celery, settings: Settings, pipeline: Pipeline | None = None) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline

    def _llm_bound(self, kind: JobKind) -> bool:
        if self.pipeline is not None:
            return self.pipeline.registry.llm_bound(kind)
        return kind.llm_bound

    def mem_tree(self, jobs: Sequence[Followup]) -> None:
        if self.settings.drain_batch:
            jobs = self._drain_messages(jobs)
        if not jobs:
            return
        broker = self.settings.broker_url
        with self.app.producer_or_acquire() as producer:
            for job in jobs:
                kind = JobKind.parse(job.kind)
                self.app.send_task(
                    names.MEM_TREE_RUN,
                    args=[job.job_id],
                    queue=queue_for(
                        kind, llm_bound=self._llm_bound(kind), tree_uses_llm=self.settings.tree_uses_llm
                    ),
                    priority=message_priority(kind, broker),
                    producer=producer,
                )

    def _drain_messages(self, jobs: Sequence[Followup]) -> list[Followup]:
        """Batch mode: one drain message per ``drain_batch`` due jobs of each queue. Returns the
        LLM-bound jobs, which keep one message each (each holds its own permit)."""
        broker, batch = self.settings.broker_url, self.settings.drain_batch
        by_queue: dict[str, list[JobKind]] = {}
        single: list[Followup] = []
        for job in jobs:
            kind = JobKind.parse(job.kind)
            queue = queue_for(
                kind, llm_bound=self._llm_bound(kind), tree_uses_llm=self.settings.tree_uses_llm
            )
            if queue == names.LLM:
                single.append(job)
            else:
                by_queue.setdefault(queue, []).append(kind)
        with self.app.producer_or_acquire() as producer:
            for queue, kinds in by_queue.items():
                members = sorted(
                    (
                        k
                        for k, q in KIND_QUEUES.items()
                        if q == queue and not (self.settings.tree_uses_llm and self._llm_bound(k))
                    ),
                    key=lambda k: k.priority,
                )
                priority = message_priority(min(kinds, key=lambda k: k.priority), broker)
                for _ in range(-(-len(kinds) // batch)):
                    self.app.send_task(
                        names.MEM_TREE_DRAIN,
                        kwargs={"kinds": [k.value for k in members], "limit": batch},
                        queue=queue,
                        priority=priority,
                        producer=producer,
                    )
        return single

    def decay(self, job_ids: Sequence[str]) -> None:
        priority = decay_priority(self.settings.broker_url)
        with self.app.producer_or_acquire() as producer:
            for job_id in job_ids:
                self.app.send_task(
                    names.DECAY_RUN, args=[job_id], queue=names.DEFAULT, priority=priority, producer=producer
                )


def beat_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    intervals = {**beat_schedule.INTERVALS_S, **settings.beat_intervals}
    unknown = sorted(set(intervals) - set(names.SWEEPS))
    if unknown:
        raise ValueError(f"MEMTASKS_BEAT_INTERVALS names unknown sweeps: {', '.join(unknown)}")
    return {
        name: {
            "task": names.SWEEPS[name],
            "schedule": interval,
            "args": [name, interval],
            "options": {"queue": names.MAINTENANCE, "expires": max(interval, 1.0)},
        }
        for name, interval in intervals.items()
    }


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (the environment's by default)."""
    settings = settings or load_settings()
    broker.install()  # a worker survives a Redis restart (see memtasks.worker.broker)
    app = Celery("memtasks", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A malformed message is discarded with a log line instead of stopping the worker.
        worker_consumer="memtasks.worker.consumer:GuardedConsumer",
        worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=names.DEFAULT,
        task_queues=[
            Queue(
                q, Exchange(q, type="direct"), routing_key=q, queue_arguments={"x-max-priority": MAX_PRIORITY}
            )
            for q in names.QUEUES
        ],
        task_routes={name: {"queue": names.MAINTENANCE} for name in names.SWEEPS.values()},
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=MAX_PRIORITY // 2,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.publish_timeout_s,
        # A publish that cannot reach the broker fails fast: the row is committed and the
        # dispatch sweep publishes it later, so waiting on the broker gains nothing.
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        beat_schedule=beat_entries(settings),
        timezone="UTC",
        enable_utc=True,
    )
    app.conf.memtasks_settings = settings
    from memtasks.worker.tasks import register

    register(app)
    return app


# ── one Pipeline per worker process ──────────────────────────────────────────

_pipeline: Pipeline | None = None


def pipeline_for(app: Celery) -> Pipeline:
    """This process's :class:`Pipeline` (built on first use, after the fork)."""
    global _pipeline
    if _pipeline is None:
        settings: Settings = app.conf.memtasks_settings
        runtime = open_runtime(settings)
        publisher = CeleryPublisher(app, settings)
        _pipeline = Pipeline.from_settings(runtime, publisher)
        publisher.pipeline = _pipeline
    return _pipeline


@signals.worker_process_init.connect
def _after_fork(**_: object) -> None:
    """A forked child must not share its parent's database connections."""
    global _pipeline
    _pipeline = None
    dispose_all()


@signals.worker_process_shutdown.connect
def _release_leases(**_: object) -> None:
    if _pipeline is not None:
        try:
            _pipeline.release_held()
        except Exception as exc:  # the leases expire and are recovered anyway
            log.warning("memtasks.worker: could not release held leases: %s", exc)


app = create_app()
