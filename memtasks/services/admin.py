"""What an operator does to jobs of either table, by id: list, show, retry, cancel, requeue.

A decay job's id starts with ``dj_``; every other id names a memory-tree job. Both tables
are shown alike (:func:`job_view`): one JSON-ready object per job, its table named, its
times as ISO-8601 UTC strings next to the raw milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from memtasks.domain.decay import DecayKind
from memtasks.domain.jobs import FailureClass, JobKind
from memtasks.domain.lifecycle import DECAY_WORDS, MEM_TREE_WORDS, Phase
from memtasks.services.job_view import DECAY_PREFIX, AnyJob, iso
from memtasks.services.job_view import job_view as status_view
from memtasks.services.runtime import Runtime
from memtasks.storage.decay_queue import DecayJob
from memtasks.storage.mem_tree_queue import Job


class Table(StrEnum):
    """The job tables, as an operator names them (``--table``)."""

    MEM_TREE = "mem-tree"
    DECAY = "decay"
    ALL = "all"

    @property
    def tables(self) -> tuple[Table, ...]:
        return (Table.MEM_TREE, Table.DECAY) if self is Table.ALL else (self,)


STATE_WORDS = {Table.MEM_TREE: MEM_TREE_WORDS, Table.DECAY: DECAY_WORDS}
KINDS: dict[Table, frozenset[str]] = {
    Table.MEM_TREE: frozenset(k.value for k in JobKind),
    Table.DECAY: frozenset(k.value for k in DecayKind),
}


def status_words(table: Table) -> list[str]:
    """The state words ``--status`` accepts for ``table`` (for ``all``: either table's)."""
    words: list[str] = []
    for t in table.tables:
        words += [w for w in STATE_WORDS[t].words(Phase) if w not in words]
    return words


def kinds_of(table: Table) -> list[str]:
    return [k for t in table.tables for k in sorted(KINDS[t])]


def table_of_kind(kind: str) -> Table | None:
    for table, kinds in KINDS.items():
        if kind in kinds:
            return table
    return None


def phase_of(word: str) -> Phase:
    """The phase a state word of either table names (``ready`` and ``pending`` alike)."""
    for words in STATE_WORDS.values():
        try:
            return words.phase(word)
        except ValueError:
            continue
    raise ValueError(f"unknown state word {word!r:.40}")


TIMES = (
    ("created_at", "created_at_ms"),
    ("started_at", "started_at_ms"),
    ("completed_at", "completed_at_ms"),
    ("updated_at", "updated_at_ms"),
    ("heartbeat_at", "heartbeat_at_ms"),
    ("locked_until", "locked_until_ms"),
    ("dispatched_at", "dispatched_at_ms"),
)


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # a row written by hand: shown as it is stored


def job_view(job: AnyJob) -> dict[str, Any]:
    """One job as an operator sees it: the status endpoint's object
    (:func:`memtasks.services.job_view.job_view`, the same keys and words) plus what only an
    operator needs — the payload (a decay job's sources and attestation flags), the backoff,
    and the raw milliseconds next to every ISO-8601 time (``created_at_ms`` …)."""
    view = status_view(job)
    due = job.scheduled_for_ms if isinstance(job, DecayJob) else job.available_at_ms
    view["due_at_ms"] = due
    for key, column in TIMES:
        ms = getattr(job, column, None)
        view[key] = iso(ms)
        view[column] = ms
    view["last_backoff_ms"] = job.last_backoff_ms
    if isinstance(job, DecayJob):
        view["source_ids"] = _payload(job.source_ids_json)
        view["attestation_required"] = job.attestation_required
        view["attestation_attached"] = job.attestation_json is not None
    else:
        view["payload"] = _payload(job.payload_json)
    return view


@dataclass(frozen=True, slots=True)
class RequeueFilter:
    """Which failed jobs a requeue takes (every field None / False: all of them)."""

    table: Table = Table.ALL
    kind: str | None = None
    failure_class: FailureClass | None = None
    failed_before_age_ms: int | None = None
    transient_only: bool = False

    def arguments(self) -> dict[str, Any]:
        return {
            "transient_only": self.transient_only,
            "kind": self.kind,
            "failure_class": None if self.failure_class is None else self.failure_class.value,
            "failed_before_age_ms": self.failed_before_age_ms,
        }

    def tables(self) -> tuple[Table, ...]:
        kind_table = None if self.kind is None else table_of_kind(self.kind)
        return tuple(t for t in self.table.tables if kind_table is None or t is kind_table)


@dataclass(frozen=True, slots=True)
class JobsAdmin:
    runtime: Runtime

    def is_decay(self, job_id: str) -> bool:
        return isinstance(job_id, str) and job_id.startswith(DECAY_PREFIX)

    def _queue(self, table: Table) -> Any:
        return self.runtime.decay if table is Table.DECAY else self.runtime.jobs

    def now(self) -> int:
        return self.runtime.jobs.clock()

    def show(self, job_id: str) -> AnyJob | None:
        return self.runtime.decay.get(job_id) if self.is_decay(job_id) else self.runtime.jobs.get(job_id)

    def list_jobs(
        self, *, table: Table = Table.ALL, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[AnyJob]:
        """The newest jobs first, of one table or both. ``status``: a state word of either
        table (``ready`` also lists pending decay jobs, ``done`` completed ones); ``kind``: a
        memory-tree or decay kind (it narrows the listing to its table)."""
        phase = None if status is None else phase_of(status)
        kind_table = None if kind is None else table_of_kind(kind)
        found: list[AnyJob] = []
        for t in table.tables:
            if kind_table is not None and t is not kind_table:
                continue
            word = None if phase is None else STATE_WORDS[t].word(phase)
            found += self._queue(t).admin.list_jobs(status=word, kind=kind, limit=limit)
        found.sort(key=lambda j: (-j.created_at_ms, j.id))
        return found[:limit]

    def page(
        self,
        table: Table,
        *,
        before_id: str | None = None,
        status: str | None = None,
        kinds: list[str] | None = None,
        failure_class: str | None = None,
        created_before_ms: int | None = None,
        search: str | None = None,
        limit: int = 50,
    ) -> list[AnyJob]:
        """A keyset page of one table (not ``all``), newest first: jobs whose id sorts below
        ``before_id``. ``status``: a state word of either table (``ready`` lists pending decay
        jobs too); ``search``: a job id or dedupe key, exactly."""
        if table is Table.ALL:
            raise ValueError("a page lists one table: mem-tree or decay")
        word = None if status is None else STATE_WORDS[table].word(phase_of(status))
        found: list[AnyJob] = self._queue(table).admin.page(
            before_id=before_id,
            status=word,
            kinds=kinds,
            failure_class=failure_class,
            created_before_ms=created_before_ms,
            search=search,
            limit=limit,
        )
        return found

    def list_mem_tree(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[Job]:
        """The newest memory-tree jobs first, optionally of one status and kind."""
        jobs: list[Job] = self.runtime.jobs.admin.list_jobs(status=status, kind=kind, limit=limit)
        return jobs

    def retry(self, job_id: str) -> AnyJob:
        """A failed job back to ready now with fresh attempts (not found / not failed: an error)."""
        queue = self.runtime.decay if self.is_decay(job_id) else self.runtime.jobs
        job: AnyJob = queue.admin.retry(job_id)
        return job

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it has (not found: an error)."""
        queue = self.runtime.decay if self.is_decay(job_id) else self.runtime.jobs
        return bool(queue.admin.cancel(job_id))

    def dedupe_holder(self, dedupe_key: str) -> Job | None:
        """The ready or running memory-tree job holding ``dedupe_key``, if any."""
        holder: Job | None = self.runtime.jobs.admin.active_holder(dedupe_key)
        return holder

    def count_failed(self, which: RequeueFilter | None = None) -> int:
        """How many failed jobs a requeue with ``which`` would look at."""
        which = which or RequeueFilter()
        return sum(self._queue(t).admin.count_failed(**which.arguments()) for t in which.tables())

    def requeue_failed(self, which: RequeueFilter | None = None, *, transient_only: bool = False) -> int:
        """Failed jobs (of both tables unless ``which`` narrows them) back to ready with fresh
        attempts; how many."""
        which = which or RequeueFilter(transient_only=transient_only)
        return sum(self._queue(t).admin.requeue_failed(**which.arguments()) for t in which.tables())


__all__ = [
    "DECAY_PREFIX",
    "AnyJob",
    "JobsAdmin",
    "RequeueFilter",
    "Table",
    "job_view",
    "kinds_of",
    "phase_of",
    "status_words",
    "table_of_kind",
]
