"""Run a periodic sweep at most once per slot, and never twice at once, across a fleet.

Two guards, both needed: the Redis lock gate keeps two runs of one sweep from
overlapping (a slow run and the next tick, two beats), and the slot claim in the
database keeps a second tick of the same slot from running again after the first one
finished (two beats send two messages per tick).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.wire import check_interval_s
from memtasks.locks import RedisLockGate
from memtasks.storage.sweeps_repo import Sweeps

log = logging.getLogger("memtasks.sweeps")

T = TypeVar("T")

LOCK_PREFIX = "memtasks:sweep:"
MIN_LOCK_TTL_S = 2.0
MAX_LOCK_TTL_S = 30.0


def lock_ttl_s(interval_s: float) -> float:
    """The sweep lock's TTL: short, since a live holder renews it (every third of it) however
    long its run takes. The TTL only bounds how long a holder that stalled or died — paused,
    killed with ``kill -9`` mid-run — keeps every other process from running the sweep: about
    two intervals, and never more than 30 s (a recovery sweep must not wait minutes)."""
    return min(MAX_LOCK_TTL_S, max(MIN_LOCK_TTL_S, 2 * interval_s))


@dataclass(frozen=True, slots=True)
class SweepRun:
    """What one tick did: ran (with the sweep's value), or skipped and why."""

    name: str
    ran: bool
    skipped_because: str | None = None
    slot: int | None = None


class SweepGate:
    def __init__(self, engine: Engine, lock_client: redis.Redis, *, clock: Clock = system_clock) -> None:
        self.sweeps = Sweeps(engine, clock=clock)
        self.lock_client = lock_client

    def run(self, name: str, interval_s: float, sweep: Callable[[], object]) -> SweepRun:
        interval_s = check_interval_s(interval_s)  # it may come from a message: NaN, -1, "60"
        interval_ms = max(1, int(interval_s * 1000))
        gate = RedisLockGate(
            self.lock_client,
            f"{LOCK_PREFIX}{name}",
            ttl_s=lock_ttl_s(interval_s),
        )
        with gate.hold() as held:
            if not held:
                return SweepRun(name, ran=False, skipped_because="another run holds the lock")
            slot = self.sweeps.claim_slot(name, interval_ms)
            if slot is None:
                return SweepRun(name, ran=False, skipped_because="this slot already ran")
            try:
                value = sweep()
            except Exception as exc:
                self.sweeps.finish(name, slot, ok=False, detail=f"{type(exc).__name__}: {exc}")
                raise
            self.sweeps.finish(name, slot, ok=True, detail=None if value is None else str(value))
            return SweepRun(name, ran=True, slot=slot)


__all__ = ["SweepGate", "SweepRun"]
