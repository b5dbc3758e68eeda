"""The periodic sweeps: each one's name, task name and how its ticks are guarded.

The one list of sweeps. ``beat_schedule.py`` gives each an interval; the sweep registry
(``memtasks.services.sweeps``) binds each to the work it does; the Celery beat schedule,
the task names and the settings' check of ``MEMTASKS_BEAT_INTERVALS`` all derive from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LockPolicy(StrEnum):
    """How two ticks of one sweep (two beats, a slow run and the next tick) are kept apart."""

    SLOT = "slot"
    """The sweep's Redis lock (no overlap) and its slot in the ``sweeps`` table (once per slot)."""
    OWN = "own"
    """The work guards itself and records every tick: consolidation's lock gate and ledger."""


@dataclass(frozen=True, slots=True)
class SweepSpec:
    name: str
    task: str
    lock: LockPolicy
    does: str


SWEEPS: tuple[SweepSpec, ...] = (
    SweepSpec(
        "consolidate",
        "memtasks.consolidate",
        LockPolicy.OWN,
        "prune old messages and excess outcomes when the lock, time and session gates pass",
    ),
    SweepSpec(
        "recover", "memtasks.recover", LockPolicy.SLOT, "expired leases back to ready, published at once"
    ),
    SweepSpec(
        "dispatch_due",
        "memtasks.dispatch_due",
        LockPolicy.SLOT,
        "publish due rows without a live message (retries, lost messages)",
    ),
    SweepSpec(
        "flush_stale",
        "memtasks.mem_tree.flush_stale",
        LockPolicy.SLOT,
        "enqueue the sealing of buffers that waited too long (3-hour dedupe key)",
    ),
    SweepSpec("self_heal", "memtasks.self_heal", LockPolicy.SLOT, "transient failures back to ready"),
    SweepSpec(
        "prune_finished", "memtasks.prune_finished", LockPolicy.SLOT, "archive finished jobs past retention"
    ),
    SweepSpec(
        "purge_retrieval_failures",
        "memtasks.retrieval_failures.purge",
        LockPolicy.SLOT,
        "delete retrieval failures past retention",
    ),
    SweepSpec("purge_retired", "memtasks.purge_retired", LockPolicy.SLOT, "delete rows of retired job kinds"),
    SweepSpec(
        "purge_archive",
        "memtasks.purge_archive",
        LockPolicy.SLOT,
        "delete archived (pruned) rows past their grace period",
    ),
)

SWEEP_NAMES: frozenset[str] = frozenset(s.name for s in SWEEPS)
SWEEP_TASKS: dict[str, str] = {s.name: s.task for s in SWEEPS}
"""Sweep name (the key of its beat entry, its lock and its ``sweeps`` row) → task name."""


def sweep(name: str) -> SweepSpec:
    for spec in SWEEPS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown sweep {name!r:.60} (known: {', '.join(sorted(SWEEP_NAMES))})")


__all__ = ["SWEEPS", "SWEEP_NAMES", "SWEEP_TASKS", "LockPolicy", "SweepSpec", "sweep"]
