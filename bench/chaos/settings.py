"""What a chaos run uses: its size, its seed, the fleet's settings and the fault timing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "chaos.json"

BEAT_OFF_S = 86_400.0
"""Sweeps that would add jobs or change finished rows (self-heal, prune) wait a day."""


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    jobs: int = 10_000
    seed: int = 0
    duration_s: float = 240.0
    """How long the producer takes to enqueue ``jobs`` (faults are injected meanwhile)."""
    out: Path = DEFAULT_OUT
    logs: Path | None = None
    """Where to copy the run's logs (fleet, servers, executions) before its directory goes."""
    workers: int = 2
    concurrency: int = 2
    pg_mode: str = "auto"
    """``private`` (a cluster of its own), ``shared`` (a database of its own on the shared
    server) or ``auto`` (private when ``initdb`` is installed)."""

    lease_s: float = 6.0
    sweep_s: float = 1.0
    """The interval of the ``recover`` and ``dispatch_due`` sweeps."""
    redispatch_after_s: float = 4.0
    max_attempts: int = 10
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 2.0
    visibility_timeout_s: float = 60.0
    recovery_tolerance_s: float = 3.0
    """Slack on top of lease + sweep interval: the sweep's own run, publishing, delivery."""

    fault_gap_s: float = 8.0
    """Pause between two faults of the schedule; random faults follow gaps of 1–2.5× this.
    Longer than lease + sweep interval: the leases one fault strands are taken over before
    the next fault strikes, so each recovery is timed against one fault."""
    warmup_s: float = 3.0
    drain_timeout_s: float = 240.0
    slow_fraction: float = 0.03
    fail_first_fraction: float = 0.02
    fail_always_fraction: float = 0.005
    """Share of memory-tree jobs that fail for good (unrecoverable): the only ``failed`` rows
    the checker allows, with decay jobs planned to miss a source."""
    decay_fraction: float = 0.1
    """Decay jobs planned next to the memory-tree jobs, as a share of ``jobs``."""
    decay_flaky_fraction: float = 0.1
    decay_missing_fraction: float = 0.05
    followup_fraction: float = 0.5
    """Share of ``extract_chunk`` jobs whose handler enqueues one ``append_buffer`` follow-up."""

    def fleet_env(self) -> dict[str, str]:
        """The ``MEMTASKS_*`` settings of the fleet (URLs are added by the run)."""
        beat = dict.fromkeys(OFF_SWEEPS, BEAT_OFF_S) | {
            "recover": self.sweep_s,
            "dispatch_due": self.sweep_s,
        }
        return {
            "MEMTASKS_HANDLERS": "bench.chaos.handlers:build_registry",
            "MEMTASKS_LEASE_S": str(self.lease_s),
            "MEMTASKS_MAX_ATTEMPTS": str(self.max_attempts),
            "MEMTASKS_DECAY_MAX_ATTEMPTS": str(self.max_attempts),
            "MEMTASKS_BACKOFF_BASE_S": str(self.backoff_base_s),
            "MEMTASKS_BACKOFF_CAP_S": str(self.backoff_cap_s),
            "MEMTASKS_BACKOFF_JITTER": "0.1",
            "MEMTASKS_REDISPATCH_AFTER_S": str(self.redispatch_after_s),
            "MEMTASKS_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
            "MEMTASKS_PUBLISH_TIMEOUT_S": "2",
            "MEMTASKS_BREAKER_COOLDOWN_S": "2",
            "MEMTASKS_BEAT_INTERVALS": json.dumps(beat),
        }

    @property
    def recovery_bound_s(self) -> float:
        return self.lease_s + self.sweep_s + self.recovery_tolerance_s

    def describe(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        values["logs"] = None if self.logs is None else str(self.logs)
        return values


FAULT_TYPES = (
    "kill_child",
    "kill_worker",
    "redis_restart",
    "redis_flushall",
    "pg_restart",
    "pg_terminate",
    "sigstop",
    "two_beats",
)
"""Every fault the driver injects (``pg_restart`` only with a private PostgreSQL cluster)."""

OFF_SWEEPS = (
    "consolidate",
    "flush_stale",
    "self_heal",
    "prune_finished",
    "purge_retrieval_failures",
    "purge_retired",
    "purge_archive",
)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the run's private servers answer."""

    database_url: str
    redis_port: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def lock_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/1"

    def env(self) -> dict[str, str]:
        return {
            "MEMTASKS_DATABASE_URL": self.database_url,
            "MEMTASKS_BROKER_URL": self.broker_url,
            "MEMTASKS_LOCK_REDIS_URL": self.lock_url,
            **self.extra,
        }
