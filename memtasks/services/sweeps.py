"""The sweep registry: every periodic sweep with its interval, its work and its guard.

Names, task names and guards come from :mod:`memtasks.domain.sweeps`, intervals from
``beat_schedule.py`` (overridden by ``MEMTASKS_BEAT_INTERVALS``), the work from
:class:`~memtasks.services.maintenance.Maintenance`. A ``slot`` sweep runs at most once per
slot and never twice at once, across a fleet — two guards, both needed: the Redis lock keeps
two runs from overlapping (a slow run and the next tick, two beats), the slot claim in the
database keeps a second tick of the same slot from running again after the first finished
(two beats send two messages per tick). An ``own`` sweep (consolidation) has exactly one
guard, its own: every tick reaches it and leaves its record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy import Engine

import beat_schedule
from memtasks.config import Settings
from memtasks.domain.clock import Clock
from memtasks.domain.errors import ConfigurationError
from memtasks.domain.sweeps import SWEEP_NAMES, SWEEPS, LockPolicy, sweep
from memtasks.domain.wire import check_interval_s
from memtasks.locks import RedisLockGate
from memtasks.services.maintenance import Maintenance
from memtasks.storage.queue.clock import database_clock
from memtasks.storage.sweeps_repo import Sweeps

log = logging.getLogger("memtasks.sweeps")

LOCK_PREFIX = "memtasks:sweep:"
MIN_LOCK_TTL_S = 2.0
MAX_LOCK_TTL_S = 30.0


def lock_ttl_s(interval_s: float) -> float:
    """The sweep lock's TTL: short, since a live holder renews it (every third of it) however
    long its run takes. The TTL only bounds how long a holder that stalled or died — paused,
    killed with ``kill -9`` mid-run — keeps every other process from running the sweep: about
    two intervals, and never more than 30 s (a recovery sweep must not wait minutes)."""
    return min(MAX_LOCK_TTL_S, max(MIN_LOCK_TTL_S, 2 * interval_s))


def intervals(settings: Settings) -> dict[str, float]:
    """Every sweep's interval in seconds: ``beat_schedule.py``, then ``MEMTASKS_BEAT_INTERVALS``."""
    base = dict(beat_schedule.INTERVALS_S)
    if set(base) != SWEEP_NAMES:
        raise ConfigurationError(
            f"beat_schedule.INTERVALS_S must name every sweep once: {', '.join(sorted(SWEEP_NAMES))}"
        )
    return {**base, **settings.beat_intervals}


@dataclass(frozen=True, slots=True)
class SweepRun:
    """What one tick did: ran (with the sweep's value), or skipped and why."""

    name: str
    ran: bool
    skipped_because: str | None = None
    slot: int | None = None


class SweepGate:
    """The ``slot`` guard: the sweep's Redis lock, then its slot in the ``sweeps`` table."""

    def __init__(self, engine: Engine, lock_client: redis.Redis, *, clock: Clock | None = None) -> None:
        self.sweeps = Sweeps(engine, clock=database_clock(engine) if clock is None else clock)
        self.lock_client = lock_client

    def run(self, name: str, interval_s: float, work: Callable[[], object]) -> SweepRun:
        interval_s = check_interval_s(interval_s)  # it may come from a message: NaN, -1, "60"
        interval_ms = max(1, int(interval_s * 1000))
        gate = RedisLockGate(self.lock_client, f"{LOCK_PREFIX}{name}", ttl_s=lock_ttl_s(interval_s))
        with gate.hold() as held:
            if not held:
                return SweepRun(name, ran=False, skipped_because="another run holds the lock")
            slot = self.sweeps.claim_slot(name, interval_ms)
            if slot is None:
                return SweepRun(name, ran=False, skipped_because="this slot already ran")
            return self._finish(name, slot, work)

    def run_unguarded(self, name: str, interval_s: float, work: Callable[[], object]) -> SweepRun:
        """An ``own`` sweep: no guard here; the tick is recorded, never refused."""
        interval_ms = max(1, int(check_interval_s(interval_s) * 1000))
        return self._finish(name, self.sweeps.record_tick(name, interval_ms), work)

    def _finish(self, name: str, slot: int, work: Callable[[], object]) -> SweepRun:
        try:
            value = work()
        except Exception as exc:
            self.sweeps.finish(name, slot, ok=False, detail=f"{type(exc).__name__}: {exc}")
            raise
        self.sweeps.finish(name, slot, ok=True, detail=None if value is None else str(value))
        return SweepRun(name, ran=True, slot=slot)


class SweepRegistry:
    """Every sweep of :data:`memtasks.domain.sweeps.SWEEPS`, bound to its work."""

    def __init__(self, engine: Engine, lock_client: redis.Redis, maintenance: Maintenance) -> None:
        self.gate = SweepGate(engine, lock_client, clock=maintenance.runtime.jobs.clock)
        # Each sweep's work is the Maintenance method of its name: the names live in one list.
        self.work: dict[str, Callable[[], object]] = {}
        for spec in SWEEPS:
            work = getattr(maintenance, spec.name, None)
            if not callable(work):
                raise ConfigurationError(f"sweep {spec.name!r} has no work (Maintenance.{spec.name})")
            self.work[spec.name] = work

    def run(self, name: str, interval_s: float) -> SweepRun:
        """Run sweep ``name`` once for the current tick of ``interval_s``, behind its guard."""
        spec = sweep(name)
        work = self.work[name]
        if spec.lock is LockPolicy.OWN:
            run = self.gate.run_unguarded(name, interval_s, work)
        else:
            run = self.gate.run(name, interval_s, work)
        if not run.ran:
            log.debug("memtasks.sweeps: sweep %s skipped: %s", name, run.skipped_because)
        return run


__all__ = ["SweepGate", "SweepRegistry", "SweepRun", "intervals", "lock_ttl_s"]
