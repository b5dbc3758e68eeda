"""One job as a JSON object: the status endpoint's answer and ``memtasks jobs show --json``.

The object has the same keys for both tables: ``id``, ``table`` (``mem_tree`` or
``decay``), ``kind``, ``status`` (the table's own word: a memory-tree job is ready,
running, done, failed or cancelled; a decay job pending, in_progress, completed, failed
or cancelled), ``priority``, ``attempts``, ``max_attempts``, ``error``,
``failure_class``, ``failure_reason`` and the times as ISO-8601 UTC strings
(``2026-12-04T10:00:00.123Z``, null when unset): ``created_at``, ``due_at``,
``started_at`` (of the last attempt), ``completed_at``, ``updated_at``, ``heartbeat_at``,
``locked_until``; then the table's own fields (``dedupe_key``; ``created_by``,
``summary_method``, ``result_memory_id``); ``claimed_by``, the worker (``host:pid``) of the
last claim, and ``attempt_history``, one object per finished attempt, oldest first (the last
20): ``attempt``, ``worker``, ``started_at``, ``ended_at``, ``outcome`` (``done``, ``retry``,
``failed``, ``deferred``, ``released`` at a worker's shutdown, ``lease_expired`` when its
worker was lost and the lease recovered) and ``error``. ``error`` is the last attempt's error, or
the reason a failed job failed; URLs in it are masked. The payload, the lease token and
the decay job's sources are left out: whoever can poll a job's status needs none of them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from memtasks.domain.clock import EPOCH
from memtasks.domain.masking import mask_urls_in
from memtasks.domain.wire import lookup_id
from memtasks.storage.decay_queue import DecayJob
from memtasks.storage.mem_tree_queue import Job
from memtasks.storage.queue import DECAY, MEM_TREE, QueueAdmin

DECAY_PREFIX = "dj_"

AnyJob = Job | DecayJob


def iso(ms: int | None) -> str | None:
    """Unix milliseconds as ISO-8601 UTC with milliseconds and ``Z``; None when unset or
    beyond what a calendar date can show."""
    if ms is None:
        return None
    try:
        moment = EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: str | None) -> str | None:
    return None if value is None else mask_urls_in(value)


def attempt_history(stored: str | None) -> list[dict[str, Any]]:
    """The stored ``attempt_history`` (JSON written by the queue's statements), readable."""
    try:
        entries = json.loads(stored) if stored else []
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [
        {
            "attempt": entry.get("attempt"),
            "worker": entry.get("worker"),
            "started_at": iso(_int(entry.get("started_ms"))),
            "ended_at": iso(_int(entry.get("ended_ms"))),
            "outcome": entry.get("outcome"),
            "error": _text(entry.get("error")),
        }
        for entry in entries
        if isinstance(entry, dict)
    ]


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def job_view(record: AnyJob) -> dict[str, Any]:
    """``record`` (a row of either table) as the JSON object described in the module doc."""
    extra: dict[str, str | None]
    if isinstance(record, DecayJob):
        status, table, reason, due = record.state.value, "decay", record.state_reason, record.scheduled_for_ms
        extra = {
            "created_by": record.created_by,
            "summary_method": record.summary_method,
            "result_memory_id": record.result_memory_id,
        }
    else:
        status, table, reason, due = (
            record.status.value,
            "mem_tree",
            record.failure_reason,
            record.available_at_ms,
        )
        extra = {"dedupe_key": record.dedupe_key, "parent_id": record.parent_id}
    error = record.last_error or (reason if status == "failed" else None)
    return {
        "id": record.id,
        "table": table,
        "kind": record.kind,
        "status": status,
        "priority": record.priority,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "error": _text(error),
        "failure_class": None if record.failure_class is None else record.failure_class.value,
        "failure_reason": _text(reason),
        "created_at": iso(record.created_at_ms),
        "due_at": iso(due),
        "started_at": iso(record.started_at_ms),
        "completed_at": iso(record.completed_at_ms),
        "updated_at": iso(record.updated_at_ms),
        "heartbeat_at": iso(record.heartbeat_at_ms),
        "locked_until": iso(record.locked_until_ms),
        **extra,
        "claimed_by": record.claimed_by,
        "attempt_history": attempt_history(record.attempt_history),
    }


class JobLookup:
    """Finds one job by id with one read by primary key: ``dj_…`` in ``decay_jobs``, every
    other id in ``mem_tree_jobs``."""

    def __init__(self, engine: Engine) -> None:
        self.mem_tree: QueueAdmin[Job] = QueueAdmin(engine, MEM_TREE, Job.from_row, _no_clock)
        self.decay: QueueAdmin[DecayJob] = QueueAdmin(engine, DECAY, DecayJob.from_row, _no_clock)

    def get(self, job_id: str) -> AnyJob | None:
        if lookup_id(job_id) is None:
            return None
        admin: QueueAdmin[Any] = self.decay if job_id.startswith(DECAY_PREFIX) else self.mem_tree
        found: AnyJob | None = admin.get(job_id)
        return found

    def view(self, job_id: str) -> dict[str, Any] | None:
        record = self.get(job_id)
        return None if record is None else job_view(record)


def _no_clock() -> int:
    raise AssertionError("a lookup by id reads no clock")  # pragma: no cover


__all__ = ["DECAY_PREFIX", "JobLookup", "iso", "job_view"]
