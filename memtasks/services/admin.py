"""What an operator does to jobs of either table, by id: show, retry, cancel, requeue.

A decay job's id starts with ``dj_``; every other id names a memory-tree job.
"""

from __future__ import annotations

from dataclasses import dataclass

from memtasks.domain.jobs import JobKind, JobStatus
from memtasks.services.runtime import Runtime
from memtasks.storage.decay_queue import DecayJob
from memtasks.storage.mem_tree_queue import Job

DECAY_PREFIX = "dj_"

AnyJob = Job | DecayJob


@dataclass(frozen=True, slots=True)
class JobsAdmin:
    runtime: Runtime

    def is_decay(self, job_id: str) -> bool:
        return isinstance(job_id, str) and job_id.startswith(DECAY_PREFIX)

    def show(self, job_id: str) -> AnyJob | None:
        return self.runtime.decay.get(job_id) if self.is_decay(job_id) else self.runtime.jobs.get(job_id)

    def list_mem_tree(
        self, *, status: JobStatus | None = None, kind: JobKind | None = None, limit: int = 50
    ) -> list[Job]:
        """The newest memory-tree jobs first, optionally of one status and kind."""
        return self.runtime.jobs.admin.list_jobs(
            status=None if status is None else JobStatus(status).value,
            kind=None if kind is None else JobKind(kind).value,
            limit=limit,
        )

    def retry(self, job_id: str) -> AnyJob:
        """A failed job back to ready now with fresh attempts (not found / not failed: an error)."""
        queue = self.runtime.decay if self.is_decay(job_id) else self.runtime.jobs
        return queue.admin.retry(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it has (not found: an error)."""
        queue = self.runtime.decay if self.is_decay(job_id) else self.runtime.jobs
        return queue.admin.cancel(job_id)

    def requeue_failed(self, *, transient_only: bool = False) -> int:
        """Failed jobs of both tables back to ready with fresh attempts."""
        return sum(
            q.admin.requeue_failed(transient_only=transient_only)
            for q in (self.runtime.jobs, self.runtime.decay)
        )


__all__ = ["DECAY_PREFIX", "JobsAdmin"]
