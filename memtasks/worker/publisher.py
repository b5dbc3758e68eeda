"""Publishing run messages with Celery: ``send_task(name, args=[job_id], queue, priority)``.

Implements :class:`memtasks.services.publishing.Publisher` for the worker (follow-ups, sweeps)
and the producer.

**Adaptive batching.** A few due memory-tree jobs travel one message each: the lowest latency
(a worker claims the job by id). A burst — at least ``MEMTASKS_DRAIN_THRESHOLD`` due jobs of
one queue published together (a producer's ``enqueue_many``, a handler's follow-ups, the
dispatch sweep catching up) — travels as drain messages instead, each claiming up to
``MEMTASKS_DRAIN_BATCH`` due jobs of the queue and settling them in one transaction: the
throughput of batches without anyone choosing a mode. ``MEMTASKS_DRAIN_BATCH=0`` keeps one
message per job; ``MEMTASKS_DRAIN_THRESHOLD=1`` always batches. LLM-bound jobs keep one
message each (each holds its own permit).

**What Flower shows.** A run message's Celery task id is the job's id, and its name (Celery's
``shadow``, carried into the worker's log lines and its task events) says the kind —
``memtasks.mem_tree.run[extract_chunk]``, ``memtasks.decay.run[episode_compression]``,
``memtasks.mem_tree.drain[bulk]`` — so Flower tells jobs apart and finds one by its id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

from memtasks.config import Settings
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree.context import Followup
from memtasks.services.publishing import DecayMessage
from memtasks.worker import names
from memtasks.worker.routing import KIND_QUEUES, decay_priority, decay_queue_for, message_priority, queue_for

LlmBound = Callable[[JobKind], bool]


class CeleryPublisher:
    """Publishes run messages through ``app`` (a worker's or a producer's client app)."""

    def __init__(self, app: Celery, settings: Settings, llm_bound: LlmBound | None = None) -> None:
        self.app = app
        self.settings = settings
        self.llm_bound: LlmBound = llm_bound or (lambda kind: kind.llm_bound)

    def _queue(self, kind: JobKind) -> str:
        return queue_for(kind, llm_bound=self.llm_bound(kind), tree_uses_llm=self.settings.tree_uses_llm)

    def mem_tree(self, jobs: Sequence[Followup]) -> None:
        by_queue: dict[str, list[tuple[Followup, JobKind]]] = {}
        for job in jobs:
            kind = JobKind.parse(job.kind)
            by_queue.setdefault(self._queue(kind), []).append((job, kind))
        if not by_queue:
            return
        broker = self.settings.broker_url
        with self.app.producer_or_acquire() as producer:
            for queue, queued in by_queue.items():
                if self._drains(queue, len(queued)):
                    self._send_drains(queue, [kind for _, kind in queued], producer)
                    continue
                for job, kind in queued:
                    self.app.send_task(
                        names.MEM_TREE_RUN,
                        args=[job.job_id],
                        queue=queue,
                        priority=message_priority(kind, broker),
                        producer=producer,
                        **run_options(names.MEM_TREE_RUN, job.job_id, kind.value, queue),
                    )

    def _drains(self, queue: str, due: int) -> bool:
        batch, threshold = self.settings.drain_batch, self.settings.drain_threshold
        return bool(batch) and queue != names.LLM and due >= threshold

    def _send_drains(self, queue: str, kinds: list[JobKind], producer: object) -> None:
        """Drain messages for ``len(kinds)`` due jobs of ``queue``: as few as the batch size
        allows, sharing the jobs evenly; each claims the queue's kinds, most urgent first."""
        members = sorted(
            (k for k, q in KIND_QUEUES.items() if q == queue and self._queue(k) == queue),
            key=lambda k: k.priority,
        )
        priority = message_priority(min(kinds, key=lambda k: k.priority), self.settings.broker_url)
        messages = -(-len(kinds) // self.settings.drain_batch)
        limit = -(-len(kinds) // messages)
        for _ in range(messages):
            self.app.send_task(
                names.MEM_TREE_DRAIN,
                kwargs={"kinds": [k.value for k in members], "limit": limit},
                queue=queue,
                priority=priority,
                producer=producer,
                shadow=names.shadow(names.MEM_TREE_DRAIN, queue),
            )

    def decay(self, jobs: Sequence[DecayMessage]) -> None:
        """Deterministic decay jobs go to ``default``, LLM summaries (handed to the fleet by an
        operator) to ``llm``; each at its kind's priority."""
        broker = self.settings.broker_url
        with self.app.producer_or_acquire() as producer:
            for job in jobs:
                queue = decay_queue_for(llm=job.llm)
                self.app.send_task(
                    names.DECAY_RUN,
                    args=[job.job_id],
                    queue=queue,
                    priority=decay_priority(job.kind, broker),
                    producer=producer,
                    **run_options(names.DECAY_RUN, job.job_id, job.kind, queue),
                )


def run_options(task: str, job_id: str, kind: str, queue: str) -> dict[str, Any]:
    """The options of a run message that Flower shows: the job's id as the task id, the kind in
    the name, and arguments a reader can take in (the kind and queue are shown, not sent)."""
    return {
        "task_id": job_id,
        "shadow": names.shadow(task, kind),
        "argsrepr": repr([job_id]),
        "kwargsrepr": repr({"kind": kind, "queue": queue}),
    }


__all__ = ["CeleryPublisher", "run_options"]
