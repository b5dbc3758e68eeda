"""What one consolidation call did, and the small helpers its ledger rows share."""

from __future__ import annotations

import time
from dataclasses import dataclass

from memtasks.domain.gates import DetailValue, Gate, GateDecision, RunOutcome, decided_by


@dataclass(frozen=True, slots=True)
class ConsolidationReport:
    """What one call did. For a dry run, the counts are what a run would delete now."""

    trigger: str
    dry_run: bool
    outcome: RunOutcome
    gates: tuple[GateDecision, ...]
    started_at_ms: int
    finished_at_ms: int
    duration_ms: int
    run_id: int
    messages_pruned: int = 0
    outcomes_pruned: int = 0
    forced: bool = False
    last_run_written: bool = False
    archive_grace_days: float = 0.0
    """The pruned rows stay restorable this long (0: they were, or would be, deleted at once)."""
    listed: dict[str, tuple[int, ...]] | None = None
    """A dry run asked to list: the ids of the messages and outcomes a run would take now."""

    @property
    def ran(self) -> bool:
        """True when the prune ran (or, for a dry run, the counting did)."""
        return self.outcome in (RunOutcome.RAN, RunOutcome.DRY_RUN)

    @property
    def decided_by(self) -> Gate | None:
        """The gate that rejected the run (for a dry run: that would have), or ``None``."""
        return decided_by(self.gates)


@dataclass(slots=True)
class Progress:
    messages: int = 0
    outcomes: int = 0


def forced_note(forced: bool) -> dict[str, DetailValue]:
    return {"bypassed": "time,session"} if forced else {}


def elapsed_ms(t0: float) -> int:
    return max(0, int((time.monotonic() - t0) * 1000))


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
