"""Task and queue names: stable strings, the contract with producers and beat.

A producer in another codebase needs only these strings and ``celery``::

    app.send_task("memtasks.mem_tree.enqueue",
                  kwargs={"kind": "extract_chunk", "payload": {"chunk_id": "c1"},
                          "dedupe_key": "extract:c1"},
                  queue="default")

Nothing here imports Celery.
"""

from __future__ import annotations

from typing import Final

# ── jobs ─────────────────────────────────────────────────────────────────────
MEM_TREE_RUN: Final = "memtasks.mem_tree.run"
"""args: [job_id] — claim the mem-tree job by id, run its handler, settle."""
MEM_TREE_ENQUEUE: Final = "memtasks.mem_tree.enqueue"
"""kwargs: kind, payload, dedupe_key?, delay_s?, max_attempts? — insert the row (deduped) and run it."""
MEM_TREE_DRAIN: Final = "memtasks.mem_tree.drain"
"""kwargs: kinds, limit — claim up to ``limit`` due jobs of ``kinds`` and run them in one transaction."""
DECAY_RUN: Final = "memtasks.decay.run"
"""args: [job_id] — run a deterministic decay job (LLM-summary jobs wait for an operator)."""
DECAY_ENQUEUE: Final = "memtasks.decay.enqueue"
"""kwargs: kind, source_ids, created_by, method?, delay_s? — insert a decay job and run it."""
RECORD_RETRIEVAL_FAILURES: Final = "memtasks.retrieval_failures.record"
"""args: [[record, …]] — write a batch of retrieval-failure records in one transaction."""

# ── sweeps (beat) ────────────────────────────────────────────────────────────
CONSOLIDATE: Final = "memtasks.consolidate"
RECOVER: Final = "memtasks.recover"
DISPATCH_DUE: Final = "memtasks.dispatch_due"
FLUSH_STALE: Final = "memtasks.mem_tree.flush_stale"
SELF_HEAL: Final = "memtasks.self_heal"
PRUNE_FINISHED: Final = "memtasks.prune_finished"
PURGE_RETRIEVAL_FAILURES: Final = "memtasks.retrieval_failures.purge"
PURGE_RETIRED: Final = "memtasks.purge_retired"

SWEEPS: Final = {
    "consolidate": CONSOLIDATE,
    "recover": RECOVER,
    "dispatch_due": DISPATCH_DUE,
    "flush_stale": FLUSH_STALE,
    "self_heal": SELF_HEAL,
    "prune_finished": PRUNE_FINISHED,
    "purge_retrieval_failures": PURGE_RETRIEVAL_FAILURES,
    "purge_retired": PURGE_RETIRED,
}
"""Sweep name (the key of its beat entry, its lock and its ``sweeps`` row) → task name."""

# ── queues ───────────────────────────────────────────────────────────────────
CRITICAL: Final = "critical"
DEFAULT: Final = "default"
BULK: Final = "bulk"
LLM: Final = "llm"
MAINTENANCE: Final = "maintenance"
QUEUES: Final = (CRITICAL, DEFAULT, BULK, LLM, MAINTENANCE)
