"""The producer API: enqueue jobs from an agent's process, with database access.

::

    producer = Producer()                       # settings from MEMTASKS_* variables
    producer.enqueue(extract_chunk_job("c1"))   # own transaction, message after commit

    with engine.begin() as conn:                # or inside the caller's transaction:
        conn.execute(insert(chunks)...)
        ids = producer.enqueue_many(jobs, conn=conn)
    producer.publish(ids)                       # optional: start now, not at the next dispatch

The row is the truth and the message only a hint: a job enqueued in the caller's
transaction exists only if that transaction commits, and the ``dispatch_due`` sweep
publishes every committed row that has no message — so a publish that fails (broker
down) or that the caller never makes loses nothing; the job starts a sweep later.

Producers without database access use ``send_task`` with the task names of
:mod:`memtasks.worker.names` instead (see the README).

Importing this module does nothing (no environment read, no connection, nothing patched);
a :class:`Producer` reads its settings when made and connects on first use. It publishes
through a Celery client app of its own (:func:`memtasks.worker.conf.client_app`): the
broker configuration of the workers, no tasks, no worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from celery import Celery
from sqlalchemy import Connection

from memtasks.config import Settings, load_settings
from memtasks.domain.decay import DecaySpec
from memtasks.domain.jobs import NewJob
from memtasks.domain.masking import mask_urls_in
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.services import intake
from memtasks.services.mem_tree import Followup
from memtasks.services.publishing import DecayMessage, M, publish_or_forget
from memtasks.services.retrieval_failures import RetrievalFailureLogger
from memtasks.services.runtime import Runtime, open_runtime
from memtasks.worker import names
from memtasks.worker.conf import client_app
from memtasks.worker.publisher import CeleryPublisher

log = logging.getLogger("memtasks.producer")


class CelerySink:
    """A retrieval-failure sink that sends each batch as one task (the worker writes it)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        # Checked as the worker checks it, in messages of at most the size it accepts.
        for wires in intake.wire_batches(batch):
            self.app.send_task(names.RECORD_RETRIEVAL_FAILURES, args=[wires], queue=names.DEFAULT)


class Producer:
    """Enqueue mem-tree and decay jobs and publish their messages after commit."""

    def __init__(
        self, settings: Settings | None = None, *, app: Celery | None = None, runtime: Runtime | None = None
    ) -> None:
        self.settings = settings or load_settings()
        self._app = app
        self._runtime: Runtime | None = runtime

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = open_runtime(self.settings)
        return self._runtime

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = client_app(self.settings)
        return self._app

    def close(self) -> None:
        """Close the broker connections of this producer's Celery app."""
        if self._app is not None:
            self._app.close()

    def _publisher(self) -> CeleryPublisher:
        return CeleryPublisher(self.app, self.settings)

    # ── mem-tree jobs ────────────────────────────────────────────────────────

    def enqueue(self, job: NewJob, *, conn: Connection | None = None) -> str | None:
        """Enqueue one job; None when its dedupe key is held by a ready or running job."""
        return self.enqueue_many([job], conn=conn)[0]

    def enqueue_many(self, jobs: Sequence[NewJob], *, conn: Connection | None = None) -> list[str | None]:
        """Enqueue jobs in one statement. Each job is checked first, by the same function as a
        remote enqueue (:func:`memtasks.services.intake.check_mem_tree_job`): nothing is written
        when one is refused (:class:`~memtasks.domain.errors.MalformedPayload` names the field).

        Without ``conn`` the rows commit here and their messages are published at once;
        with ``conn`` they commit with the caller's transaction and are published by the
        next dispatch sweep, or at once by :meth:`publish` after the caller commits.
        """
        for job in jobs:
            intake.check_mem_tree_job(job)
        ids = self.runtime.jobs.enqueue_many(jobs, conn=conn, published=conn is None)
        if conn is None:
            now = self.runtime.jobs.clock()
            due = [
                Followup(job_id, job.kind.value)
                for job_id, job in zip(ids, jobs, strict=True)
                if job_id is not None and (job.available_at_ms is None or job.available_at_ms <= now)
            ]
            self._mem_tree_or_dispatch(due)
        return ids

    def publish(self, job_ids: Sequence[str | None]) -> int:
        """Publish committed ready jobs now (after the caller's commit); returns how many."""
        rows = self.runtime.jobs.admin.get_many([job_id for job_id in job_ids if job_id is not None])
        ready = [Followup(row.id, row.kind) for row in rows if row.status.value == "ready"]
        self._mem_tree_or_dispatch(ready)
        return len(ready)

    def _mem_tree_or_dispatch(self, jobs: list[Followup]) -> None:
        if jobs:  # no Celery app is made for nothing to publish
            send = lambda batch: self._publisher().mem_tree(batch)  # noqa: E731 (made inside the try)
            self._publish_or_leave_to_dispatch(send, self.runtime.jobs.forget_dispatch, jobs)

    def _decay_or_dispatch(self, jobs: list[DecayMessage]) -> None:
        if jobs:
            send = lambda batch: self._publisher().decay(batch)  # noqa: E731 (made inside the try)
            self._publish_or_leave_to_dispatch(send, self.runtime.decay.forget_dispatch, jobs)

    @staticmethod
    def _publish_or_leave_to_dispatch(
        send: Callable[[Sequence[M]], None], forget: Callable[[Sequence[str]], int], jobs: list[M]
    ) -> None:
        """Publish; when the broker cannot be reached the rows are committed, and the dispatch
        sweep publishes them (they are marked undispatched): warn, do not raise."""
        try:
            publish_or_forget(send, forget, jobs)
        except Exception as exc:
            log.warning(
                "memtasks.producer: could not publish %d jobs (%s); they are committed and the "
                "dispatch sweep will publish them",
                len(jobs),
                mask_urls_in(str(exc)),
            )

    # ── decay jobs ───────────────────────────────────────────────────────────

    def enqueue_decay(
        self,
        spec: DecaySpec,
        *,
        created_by: str,
        scheduled_for_ms: int | None = None,
        conn: Connection | None = None,
    ) -> str:
        """Enqueue a decay job, checked as a remote one is (:func:`~memtasks.services.intake.check_decay_job`:
        nothing is written when it is refused).

        LLM-summary jobs are never published: an operator runs them with an attestation.
        """
        request = intake.check_decay_job(spec, created_by, scheduled_for_ms)
        publish = conn is None and scheduled_for_ms is None and not spec.needs_operator
        job_id = self.runtime.decay.enqueue(
            spec,
            created_by=request.created_by,
            scheduled_for_ms=scheduled_for_ms,
            conn=conn,
            published=publish,
        )
        if publish:
            self._decay_or_dispatch([DecayMessage(job_id, spec.kind.value)])
        return job_id

    def submit_decay(self, job_id: str, attestation: str) -> bool:
        """Hand a pending LLM-summary job to the fleet with its operator's attestation: a worker
        on the ``llm`` queue verifies it, takes an LLM permit and runs it. False when the job
        is not a pending LLM summary."""
        job = self.runtime.decay.get(job_id)
        if job is None or not self.runtime.decay.attach_attestation(job_id, attestation):
            return False
        self._decay_or_dispatch([DecayMessage(job_id, job.kind, llm=True)])
        return True

    # ── retrieval failures ───────────────────────────────────────────────────

    def retrieval_failure_logger(self) -> RetrievalFailureLogger:
        """A non-blocking logger whose batches travel as Celery tasks."""
        s = self.settings
        return RetrievalFailureLogger(
            CelerySink(self.app),
            capacity=s.retrieval_failure_capacity,
            batch_size=s.retrieval_failure_batch_size,
            flush_interval_s=s.retrieval_failure_flush_interval_s,
        )


__all__ = ["CelerySink", "Producer"]
