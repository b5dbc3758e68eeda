"""Enqueues that arrive as messages, from producers without database access.

``memtasks.mem_tree.enqueue``, ``memtasks.decay.enqueue`` and
``memtasks.retrieval_failures.record`` are checked by :mod:`~memtasks.services.intake` with
the producer API's rules, written, then published after commit like any other enqueue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memtasks.domain.decay import SummaryMethod
from memtasks.services import intake
from memtasks.services.maintenance import Maintenance
from memtasks.services.mem_tree.context import Followup
from memtasks.services.publishing import DecayMessage
from memtasks.services.retrieval_failures import DatabaseSink

log = logging.getLogger("memtasks.remote")


@dataclass(slots=True)
class RemoteIntake:
    maintenance: Maintenance

    def enqueue_mem_tree(
        self,
        kind: str,
        payload: Mapping[str, Any],
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        """Insert the job (deduplicated) and publish it."""
        jobs = self.maintenance.runtime.jobs
        job = intake.mem_tree_job_from_wire(
            kind, payload, dedupe_key, delay_s, max_attempts, now_ms=jobs.clock()
        )
        job_id = jobs.enqueue(job, published=True)
        if job_id is not None and job.available_at_ms is None:
            self.maintenance.publish_mem_tree([Followup(job_id, job.kind.value)])
        return {"job_id": job_id, "deduped": job_id is None}

    def enqueue_decay(
        self,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = SummaryMethod.DETERMINISTIC_CONCATENATE.value,
        delay_s: float | None = None,
    ) -> dict[str, Any]:
        """Insert a decay job and publish it. An LLM-summary job waits, unpublished, until an
        operator hands it to the fleet with an attestation."""
        decay = self.maintenance.runtime.decay
        request = intake.decay_job_from_wire(
            kind, source_ids, created_by, method, delay_s, now_ms=decay.clock()
        )
        spec, scheduled = request.spec, request.scheduled_for_ms
        publish = scheduled is None and not spec.needs_operator
        job_id = decay.enqueue(
            spec, created_by=request.created_by, scheduled_for_ms=scheduled, published=publish
        )
        if publish:
            self.maintenance.publish_decay([DecayMessage(job_id, spec.kind.value)])
        return {"job_id": job_id}

    def record_retrieval_failures(self, batch: Sequence[object]) -> dict[str, int]:
        """Write a batch sent by the Celery sink; invalid records are logged and counted.

        Checked by :func:`memtasks.services.intake.retrieval_failure_batch`, as the producer's
        sink checks it; a batch that is no list or too long is refused whole (ValidationError).
        """
        checked = intake.retrieval_failure_batch(batch)
        for reason in checked.rejected:
            log.error("memtasks.remote: retrieval-failure record rejected: %s", reason)
        runtime = self.maintenance.runtime
        now = runtime.jobs.clock()
        records = [record.stamped(now) for record in checked.records]
        if records:
            DatabaseSink(runtime.engine, clock=runtime.jobs.clock).write(records)
        return {"written": len(records), "rejected": len(checked.rejected)}


__all__ = ["RemoteIntake"]
