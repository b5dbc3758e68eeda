"""Enqueues that arrive as messages, from producers without database access.

``memtasks.mem_tree.enqueue``, ``memtasks.decay.enqueue`` and
``memtasks.retrieval_failures.record`` are checked by :mod:`~memtasks.services.intake` with
the producer API's rules, written, then published after commit like any other enqueue.

An enqueue may carry the job's id, chosen by the producer (:mod:`memtasks.client`), so the
producer knows it before any worker runs: the row is stored under that id, and the same
message delivered twice writes it once. A mem-tree job whose dedupe key an active job holds
is still stored under its id, as a cancelled row naming that job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memtasks.domain.decay import DecayState, SummaryMethod
from memtasks.domain.jobs import JobStatus
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
        job_id: str | None = None,
        fair_key: str | None = None,
    ) -> dict[str, Any]:
        """Insert the job (deduplicated), under ``job_id`` when the producer chose it, and
        publish it. ``fair_key``: its fair-share lane (else the payload's ``agent_id``)."""
        jobs = self.maintenance.runtime.jobs
        chosen = intake.mem_tree_job_id_from_wire(job_id)
        job = intake.mem_tree_job_from_wire(
            kind, payload, dedupe_key, delay_s, max_attempts, now_ms=jobs.clock(), fair_key=fair_key
        )
        if chosen is None:
            new_id = jobs.enqueue(job, published=True)
            if new_id is not None and job.available_at_ms is None:
                self.maintenance.publish_mem_tree([Followup(new_id, job.kind.value)])
            return {"job_id": new_id, "deduped": new_id is None}
        done = jobs.enqueue_as(job, chosen, published=True)
        if done.duplicate_of is not None:
            log.info("memtasks.remote: job %s cancelled as a duplicate of %s", chosen, done.duplicate_of)
            return {"job_id": chosen, "deduped": True, "duplicate_of": done.duplicate_of}
        stored = done.inserted or self._still_ready(chosen)
        if stored and job.available_at_ms is None:  # a redelivery publishes a ready row again: harmless
            self.maintenance.publish_mem_tree([Followup(chosen, job.kind.value)])
        return {"job_id": chosen, "deduped": False, **({} if done.inserted else {"redelivered": True})}

    def _still_ready(self, job_id: str) -> bool:
        row = self.maintenance.runtime.jobs.get(job_id)
        return row is not None and row.status is JobStatus.READY

    def enqueue_decay(
        self,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = SummaryMethod.DETERMINISTIC_CONCATENATE.value,
        delay_s: float | None = None,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        """Insert a decay job (under ``job_id`` when the producer chose it) and publish it. An
        LLM-summary job waits, unpublished, until an operator hands it to the fleet with an
        attestation."""
        decay = self.maintenance.runtime.decay
        chosen = intake.decay_job_id_from_wire(job_id)
        request = intake.decay_job_from_wire(
            kind, source_ids, created_by, method, delay_s, now_ms=decay.clock()
        )
        spec, scheduled = request.spec, request.scheduled_for_ms
        publish = scheduled is None and not spec.needs_operator
        if chosen is None:
            new_id = decay.enqueue(
                spec, created_by=request.created_by, scheduled_for_ms=scheduled, published=publish
            )
        else:
            new_id = chosen
            if not decay.enqueue_as(
                spec, chosen, created_by=request.created_by, scheduled_for_ms=scheduled, published=publish
            ):
                stored = decay.get(chosen)
                publish = publish and stored is not None and stored.state is DecayState.PENDING
                if publish:
                    self.maintenance.publish_decay([DecayMessage(chosen, spec.kind.value)])
                return {"job_id": chosen, "redelivered": True}
        if publish:
            self.maintenance.publish_decay([DecayMessage(new_id, spec.kind.value)])
        return {"job_id": new_id}

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
