"""Publishing run messages with Celery: ``send_task(name, args=[job_id], queue, priority)``.

Implements :class:`memtasks.services.publishing.Publisher` for the worker (follow-ups, sweeps)
and the producer. With ``MEMTASKS_DRAIN_BATCH`` set, due memory-tree jobs travel as drain
messages of up to that many jobs per queue instead of one message each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
                    queue=self._queue(kind),
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
            queue = self._queue(kind)
            if queue == names.LLM:
                single.append(job)
            else:
                by_queue.setdefault(queue, []).append(kind)
        with self.app.producer_or_acquire() as producer:
            for queue, kinds in by_queue.items():
                members = sorted(
                    (k for k, q in KIND_QUEUES.items() if q == queue and self._queue(k) == queue),
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

    def decay(self, jobs: Sequence[DecayMessage]) -> None:
        """Deterministic decay jobs go to ``default``, LLM summaries (handed to the fleet by an
        operator) to ``llm``; each at its kind's priority."""
        broker = self.settings.broker_url
        with self.app.producer_or_acquire() as producer:
            for job in jobs:
                self.app.send_task(
                    names.DECAY_RUN,
                    args=[job.job_id],
                    queue=decay_queue_for(llm=job.llm),
                    priority=decay_priority(job.kind, broker),
                    producer=producer,
                )


__all__ = ["CeleryPublisher"]
