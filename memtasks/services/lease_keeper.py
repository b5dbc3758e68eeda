"""One heartbeat thread per worker process for every lease the process holds.

A job's lease must be extended while its handler runs (and its LLM permit renewed with
it), or another worker takes the job over. Starting a thread per job cost more than a
no-op job itself; the keeper runs one daemon thread that wakes when the earliest held
lease is due a beat. It also knows every lease the process holds, so a graceful shutdown
can hand them back (:meth:`LeaseKeeper.take_all`).

A beat that finds its lease gone (taken over after the process stalled) drops it, logs
and tells the job's code through its :class:`LeaseWatch` (``watch.lost``), so a handler can
stop early instead of working on for a settle that will be fenced out. A beat that finds
the row no longer running because the job is settling (the job said so with
``watch.settling()``) says nothing: that is no loss. A beat that fails (database
unreachable) is retried at the next interval — the lease has two more intervals of slack.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from memtasks.domain.jobs import Lease

log = logging.getLogger(__name__)

Beat = Callable[[Lease], bool]
"""Extend a lease; False when it no longer holds."""

Renew = Callable[[], object]
"""Something else to keep alive with the lease (an LLM permit)."""


class LeaseWatch:
    """What the code running a job can learn about its lease while it runs."""

    __slots__ = ("_lost", "_settling")

    def __init__(self) -> None:
        self._lost = threading.Event()
        self._settling = False

    @property
    def lost(self) -> bool:
        """True once a heartbeat found the lease gone: the job was taken over; whatever this
        run still does will be rolled back at its settle. Check it and stop early."""
        return self._lost.is_set()

    def wait_lost(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``, waking early when the lease is lost; whether it was."""
        return self._lost.wait(timeout_s)

    def settling(self) -> None:
        """The job is being settled: a heartbeat that now finds its row no longer running is
        seeing that settle, not a takeover."""
        self._settling = True

    @property
    def is_settling(self) -> bool:
        return self._settling

    def mark_lost(self) -> None:
        self._lost.set()


@dataclass(slots=True)
class _Held:
    lease: Lease
    due: float
    renew: Renew | None
    watch: LeaseWatch | None = None


class LeaseKeeper:
    """Heartbeats every held lease each ``interval_s`` from one thread, started on first use."""

    def __init__(self, beat: Beat, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval_s!r}")
        self.beat = beat
        self.interval_s = interval_s
        self._held: dict[str, _Held] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def holding(self, lease: Lease, renew: Renew | None = None) -> Iterator[LeaseWatch]:
        """Keep ``lease`` (and ``renew``) alive for the duration of the block; its watch."""
        watch = LeaseWatch()
        self.hold(lease, renew, watch)
        try:
            yield watch
        finally:
            self.drop(lease)

    @contextmanager
    def holding_many(self, leases: Sequence[Lease]) -> Iterator[LeaseWatch]:
        """Keep every lease of a batch alive for the duration of the block (one lock, not one
        per job); one watch for the batch (lost when any of its leases is)."""
        watch = LeaseWatch()
        due = time.monotonic() + self.interval_s
        with self._cond:
            for lease in leases:
                self._held[lease.job_id] = _Held(lease, due, None, watch)
            self._start_thread()
        try:
            yield watch
        finally:
            with self._cond:
                for lease in leases:
                    held = self._held.get(lease.job_id)
                    if held is not None and held.lease == lease:
                        del self._held[lease.job_id]

    def hold(self, lease: Lease, renew: Renew | None = None, watch: LeaseWatch | None = None) -> None:
        with self._cond:
            self._held[lease.job_id] = _Held(lease, time.monotonic() + self.interval_s, renew, watch)
            self._start_thread()
            # No wake-up: a new lease is due one interval from now, no earlier than any lease
            # already held, and the thread never sleeps longer than one interval — it wakes in
            # time by itself (a wake-up per job cost a thread switch per job).

    def drop(self, lease: Lease) -> None:
        """Stop beating ``lease`` (a newer lease of the same job stays)."""
        with self._cond:
            held = self._held.get(lease.job_id)
            if held is not None and held.lease == lease:
                del self._held[lease.job_id]

    def held(self) -> list[Lease]:
        with self._cond:
            return [h.lease for h in self._held.values()]

    def take_all(self) -> list[Lease]:
        """Forget every held lease and return them (to release them at shutdown)."""
        with self._cond:
            leases = [h.lease for h in self._held.values()]
            self._held.clear()
            return leases

    def _start_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="memtasks-lease-keeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while True:
            with self._cond:
                due = self._wait_for_due(pid)
            if due is None:
                return
            for held in due:
                self._beat(held)

    def _wait_for_due(self, pid: int) -> list[_Held] | None:
        """Under the lock: the leases due a beat now, rescheduled; None in a forked copy."""
        while self._pid == pid:
            now = time.monotonic()
            due = [h for h in self._held.values() if h.due <= now]
            if due:
                for held in due:
                    held.due = now + self.interval_s
                return due
            earliest = min((h.due for h in self._held.values()), default=now + self.interval_s)
            self._cond.wait(earliest - now)
        return None

    def _beat(self, held: _Held) -> None:
        job_id = held.lease.job_id
        try:
            if not self.beat(held.lease):
                self.drop(held.lease)
                if held.watch is not None and held.watch.is_settling:
                    return  # the row changed under its own settle: no loss
                log.warning("memtasks.leases: job %s lost its lease while running", job_id)
                if held.watch is not None:
                    held.watch.mark_lost()
                return
            if held.renew is not None:
                held.renew()
        except Exception as exc:  # the next beat tries again; the lease has slack
            log.warning("memtasks.leases: heartbeat of %s failed: %s", job_id, exc)


__all__ = ["LeaseKeeper", "LeaseWatch"]
