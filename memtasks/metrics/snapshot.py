"""The exporter's one read of the tables per interval, shared by every scrape and probe.

A scrape, a readiness probe and the next scrape all answer from one :class:`Snapshot`;
:meth:`SnapshotCache.get` reads the tables again only when the snapshot is at least
``interval_s`` old, under a lock, so concurrent scrapes never read in parallel (the ones
that waited get the snapshot just read) and a thousand scrapes a second read the tables
once per interval. A failed read is a snapshot too: it carries the error, and the next
read waits the same interval (a down database is not hammered).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.masking import mask_urls_in
from memtasks.services.job_timings import JobTimings, TimingsView
from memtasks.services.status import StatusReport, status_report

log = logging.getLogger("memtasks.metrics")

DEFAULT_INTERVAL_S = 15.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the tables: the report, or the error that stopped it.

    Times are the host's monotonic clock (seconds): ``started`` when the read began,
    ``read_s`` how long it took, ``good_at`` when the last successful read ended (this one or
    an earlier one; None when none has succeeded yet).
    """

    report: StatusReport | None
    error: str | None
    timings: TimingsView
    started: float
    read_s: float
    good_at: float | None

    @property
    def ok(self) -> bool:
        return self.report is not None


class SnapshotCache:
    """Reads the tables at most once per ``interval_s``, whatever the rate of :meth:`get`."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Clock = system_clock,
        timings: JobTimings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be above 0, got {interval_s!r}")
        self.engine = engine
        self.interval_s = interval_s
        self.clock = clock
        self.timings = timings if timings is not None else JobTimings(engine)
        self.monotonic = monotonic
        self.reads = 0
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def get(self) -> Snapshot:
        """The current snapshot, read first when there is none or it is ``interval_s`` old."""
        with self._lock:
            current = self._snapshot
            if current is None or self.monotonic() - current.started >= self.interval_s:
                current = self._snapshot = self._read(current)
            return current

    def age_s(self, snapshot: Snapshot) -> float | None:
        """Seconds since the tables were last read successfully (None: never)."""
        return None if snapshot.good_at is None else max(0.0, self.monotonic() - snapshot.good_at)

    def _read(self, previous: Snapshot | None) -> Snapshot:
        self.reads += 1
        started = self.monotonic()
        try:
            now_ms = self.clock()
            report = status_report(self.engine, lambda: now_ms)
            self.timings.advance(now_ms)
        except Exception as exc:
            error = describe(exc)
            log.warning("memtasks.metrics: cannot read the job tables: %s", error)
            ended = self.monotonic()
            return Snapshot(
                report=None,
                error=error,
                timings=self.timings.view(),
                started=started,
                read_s=ended - started,
                good_at=None if previous is None else previous.good_at,
            )
        ended = self.monotonic()
        return Snapshot(
            report=report,
            error=None,
            timings=self.timings.view(),
            started=started,
            read_s=ended - started,
            good_at=ended,
        )


def describe(exc: BaseException) -> str:
    """The error's class and first line, every URL in it masked."""
    lines = str(exc).strip().splitlines()
    return mask_urls_in(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


__all__ = ["DEFAULT_INTERVAL_S", "Snapshot", "SnapshotCache", "describe"]
