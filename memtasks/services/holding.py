"""What a running job holds: its lease, kept alive, and — for LLM-bound work — a fleet-wide
permit taken before the claim. One context for both, for every job table.

The permit comes first: a job that cannot have one is not claimed (its due time moves a
little ahead instead), so its lease never burns while it waits. Once claimed, the job's
lease is heartbeated from one thread per table, and the permit renewed with it, until the
job settles; a graceful shutdown hands back every lease still held (attempt refunded).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import redis

from memtasks.config import Settings
from memtasks.domain.clock import SECOND_MS
from memtasks.domain.errors import MemtasksError
from memtasks.domain.jobs import Lease
from memtasks.locks import redis_client
from memtasks.permits import RedisSemaphore
from memtasks.services.lease_keeper import LeaseKeeper, LeaseWatch
from memtasks.storage.queue import QueueTable

log = logging.getLogger("memtasks.holding")

LLM_PERMITS_KEY = "memtasks:llm-permits"
DEFAULT_PERMIT_WAIT_MS = 5 * SECOND_MS


class PermitsBusy(MemtasksError):
    """Every fleet-wide LLM permit is taken: nothing was claimed; try again shortly."""


class Leases(Protocol):
    """A job table's lease operations (a ``memtasks.storage.queue.LeasedQueue``)."""

    table: QueueTable

    def heartbeat(self, lease: Lease, *, extend_ms: int | None = None) -> bool: ...

    def release(self, leases: Sequence[Lease]) -> int: ...


@dataclass(slots=True)
class Permit:
    """A permit taken (``granted``) or refused; ``token`` renews and releases it."""

    granted: bool
    token: str | None = None
    semaphore: RedisSemaphore | None = None

    def renew(self) -> None:
        if self.semaphore is not None and self.token is not None:
            self.semaphore.renew(self.token)


@dataclass(slots=True)
class Holding:
    """The permits and lease keepers of one process.

    ``permits`` None: nothing needs a permit here (no LLM is called). ``heartbeat_s`` None:
    leases are not heartbeated (tests that freeze the clock). ``permit_wait_ms``: how far a
    job that found no permit free is moved ahead, unclaimed (``MEMTASKS_LLM_WAIT_S``).
    """

    permits: RedisSemaphore | None = None
    heartbeat_s: float | None = None
    permit_wait_ms: int = DEFAULT_PERMIT_WAIT_MS
    _keepers: dict[str, tuple[Leases, LeaseKeeper]] = field(default_factory=dict)

    @contextmanager
    def permit(self, needed: bool) -> Iterator[Permit]:
        """A permit for the block when ``needed`` (released after it), else a granted no-op."""
        if not needed or self.permits is None:
            yield Permit(granted=True)
            return
        token = self.permits.acquire()
        if token is None:
            yield Permit(granted=False)
            return
        try:
            yield Permit(granted=True, token=token, semaphore=self.permits)
        finally:
            self.permits.release(token)

    @contextmanager
    def lease(self, queue: Leases, lease: Lease, permit: Permit | None = None) -> Iterator[LeaseWatch]:
        """Heartbeat ``lease`` (and renew ``permit``) while the block runs; the lease's watch
        (``watch.lost`` once a heartbeat found it taken over)."""
        keeper = self._keeper(queue)
        if keeper is None:
            yield LeaseWatch()
            return
        renew = None if permit is None or permit.token is None else permit.renew
        with keeper.holding(lease, renew) as watch:
            yield watch

    @contextmanager
    def leases(self, queue: Leases, leases: Sequence[Lease]) -> Iterator[LeaseWatch]:
        """Heartbeat every lease of a claimed batch while the block runs; the batch's watch."""
        keeper = self._keeper(queue)
        if keeper is None:
            yield LeaseWatch()
            return
        with keeper.holding_many(leases) as watch:
            yield watch

    def _keeper(self, queue: Leases) -> LeaseKeeper | None:
        if self.heartbeat_s is None:
            return None
        held = self._keepers.get(queue.table.name)
        if held is None:
            held = self._keepers[queue.table.name] = (queue, LeaseKeeper(queue.heartbeat, self.heartbeat_s))
        return held[1]

    def release_all(self) -> int:
        """Graceful shutdown: hand back every lease still held here (attempt refunded)."""
        released = 0
        for queue, keeper in self._keepers.values():
            leases = keeper.take_all()
            if leases:
                released += queue.release(leases)
        if released:
            log.warning("memtasks.holding: released %d held leases at shutdown", released)
        return released


def holding_for(settings: Settings, lock_client: redis.Redis | None = None) -> Holding:
    """The permits (on the lock Redis) and lease heartbeats (a third of the lease) of ``settings``."""
    client = redis_client(settings.lock_redis_url) if lock_client is None else lock_client
    permits = RedisSemaphore(
        client, LLM_PERMITS_KEY, limit=settings.llm_permits, ttl_s=settings.llm_permit_ttl_s
    )
    return Holding(
        permits=permits,
        heartbeat_s=max(0.05, settings.lease_s / 3),
        permit_wait_ms=int(settings.llm_wait_s * SECOND_MS),
    )


__all__ = [
    "LLM_PERMITS_KEY",
    "Holding",
    "Leases",
    "Permit",
    "PermitsBusy",
    "holding_for",
]
