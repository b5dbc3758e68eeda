"""Task and queue names: stable strings, the contract with producers and beat.

A producer in another codebase needs only these strings and ``celery``::

    app.send_task("memtasks.mem_tree.enqueue",
                  kwargs={"kind": "extract_chunk", "payload": {"chunk_id": "c1"},
                          "dedupe_key": "extract:c1"},
                  queue="bulk")

(:class:`memtasks.client.MemtasksClient` does it for you, checks the input first and chooses
the job's id). Without ``queue=`` the message goes to Celery's default queue :data:`CELERY`,
which every worker that consumes ``default`` consumes too.

Nothing here imports Celery.
"""

from __future__ import annotations

from typing import Final

from memtasks.domain import queues
from memtasks.domain.sweeps import SWEEP_TASKS

# ── jobs ─────────────────────────────────────────────────────────────────────
MEM_TREE_RUN: Final = "memtasks.mem_tree.run"
"""args: [job_id] — claim the mem-tree job by id, run its handler, settle."""
MEM_TREE_ENQUEUE: Final = "memtasks.mem_tree.enqueue"
"""kwargs: kind, payload, dedupe_key?, delay_s?, max_attempts?, job_id?, fair_key? — insert the row (deduped),
under ``job_id`` when the producer chose it (``job:<uuid>``), and run it."""
MEM_TREE_DRAIN: Final = "memtasks.mem_tree.drain"
"""kwargs: kinds, limit — claim up to ``limit`` due jobs of ``kinds`` and run them in one transaction."""
DECAY_RUN: Final = "memtasks.decay.run"
"""args: [job_id] — run a deterministic decay job (LLM-summary jobs wait for an operator)."""
DECAY_ENQUEUE: Final = "memtasks.decay.enqueue"
"""kwargs: kind, source_ids, created_by, method?, delay_s?, job_id? — insert a decay job, under
``job_id`` when the producer chose it (``dj_<32 hex>``), and run it."""
RECORD_RETRIEVAL_FAILURES: Final = "memtasks.retrieval_failures.record"
"""args: [[record, …]] — write a batch of retrieval-failure records in one transaction."""

# ── sweeps (beat): one list, in memtasks.domain.sweeps ──────────────────────
CONSOLIDATE: Final = SWEEP_TASKS["consolidate"]
RECOVER: Final = SWEEP_TASKS["recover"]
DISPATCH_DUE: Final = SWEEP_TASKS["dispatch_due"]
FLUSH_STALE: Final = SWEEP_TASKS["flush_stale"]
SELF_HEAL: Final = SWEEP_TASKS["self_heal"]
PRUNE_FINISHED: Final = SWEEP_TASKS["prune_finished"]
PURGE_RETRIEVAL_FAILURES: Final = SWEEP_TASKS["purge_retrieval_failures"]
PURGE_RETIRED: Final = SWEEP_TASKS["purge_retired"]
PURGE_ARCHIVE: Final = SWEEP_TASKS["purge_archive"]

SWEEPS: Final = SWEEP_TASKS
"""Sweep name (the key of its beat entry, its lock and its ``sweeps`` row) → task name."""

# ── queues ───────────────────────────────────────────────────────────────────
# The one list is memtasks.domain.queues (the settings check MEMTASKS_WORKER_QUEUES against it).
CRITICAL: Final = queues.CRITICAL
DEFAULT: Final = queues.DEFAULT
BULK: Final = queues.BULK
LLM: Final = queues.LLM
MAINTENANCE: Final = queues.MAINTENANCE
QUEUES: Final = queues.QUEUES
"""memtasks' own queues: priority queues (``x-max-priority`` 9 on RabbitMQ)."""
CELERY: Final = "celery"
"""Celery's default queue, where a ``send_task`` without ``queue=`` goes. Declared as a plain
Celery producer declares it (no ``x-max-priority``), so neither side meets a
``PRECONDITION_FAILED`` on RabbitMQ; every worker that consumes :data:`DEFAULT` consumes it
too, so such a message — the only copy of its job — is run, not lost."""


def shadow(task: str, detail: str) -> str:
    """The name a message shows in logs, events and Flower (Celery's ``shadow``): the task's
    name and what it is about, e.g. ``memtasks.mem_tree.run[extract_chunk]``."""
    return f"{task}[{detail}]"
