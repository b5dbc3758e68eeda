"""The last hour of finished jobs, minute by minute, for the web console's charts.

Per minute and per job class (table and kind): how many jobs finished (done, failed), and a
sample of their waits (enqueue or due time → start) and run times, from which the console
draws throughput and the median and 95th percentile over time. Like the exporter's
histograms (:mod:`memtasks.services.job_timings`) it reads only the rows finished since its
watermark, through the index on ``completed_at_ms``: a refresh costs what finished since the
last one, not the table's size. The first refresh reads the last hour.
"""

from __future__ import annotations

import random
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from memtasks.services.job_timings import SETTLE_GRACE_MS, run_seconds, wait_seconds
from memtasks.storage.stats_repo import FinishedJob, JobTable, Watermark, finished_after

MINUTE_MS = 60_000
WINDOW_MINUTES = 60
SAMPLE_PER_MINUTE = 400
"""Waits and run times kept per minute and class (a uniform sample beyond it)."""
READ_LIMIT = 20_000


@dataclass(slots=True)
class _Minute:
    count: int = 0
    seen: int = 0
    waits: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)

    def add(self, job: FinishedJob, rng: random.Random) -> None:
        self.count += 1
        self.seen += 1
        if len(self.waits) < SAMPLE_PER_MINUTE:
            self.waits.append(wait_seconds(job))
            self.runs.append(run_seconds(job))
            return
        slot = rng.randrange(self.seen)  # reservoir sampling: every job equally likely kept
        if slot < SAMPLE_PER_MINUTE:
            self.waits[slot] = wait_seconds(job)
            self.runs[slot] = run_seconds(job)


@dataclass(frozen=True, slots=True)
class Point:
    minute_ms: int
    finished: int
    wait_p50_s: float | None
    wait_p95_s: float | None
    run_p50_s: float | None
    run_p95_s: float | None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


Key = tuple[JobTable, str]


class JobSeries:
    """Thread-safe; :meth:`refresh` reads at most once per ``min_interval_ms``."""

    def __init__(self, engine: Engine, clock: Callable[[], int], *, min_interval_ms: int = 2_000) -> None:
        self.engine = engine
        self.clock = clock
        self.min_interval_ms = min_interval_ms
        self._lock = threading.Lock()
        self._marks: dict[JobTable, Watermark] = {}
        self._minutes: dict[int, dict[Key, _Minute]] = {}
        self._refreshed_ms: int | None = None
        self._rng = random.Random()

    def refresh(self) -> None:
        with self._lock:
            now = self.clock()
            if self._refreshed_ms is not None and now - self._refreshed_ms < self.min_interval_ms:
                return
            self._refreshed_ms = now
            until = now - SETTLE_GRACE_MS
            oldest = (now // MINUTE_MS - WINDOW_MINUTES + 1) * MINUTE_MS
            for table in JobTable:
                mark = self._marks.get(table, Watermark(oldest))
                while True:
                    jobs = finished_after(self.engine, table, mark, until, READ_LIMIT)
                    for job in jobs:
                        minute = job.completed_at_ms // MINUTE_MS * MINUTE_MS
                        per = self._minutes.setdefault(minute, {})
                        per.setdefault((table, job.kind), _Minute()).add(job, self._rng)
                    if jobs:
                        mark = jobs[-1].watermark
                    if len(jobs) < READ_LIMIT:
                        break
                self._marks[table] = mark
            for minute in [m for m in self._minutes if m < oldest]:
                del self._minutes[minute]

    def finished_last_hour(self) -> dict[Key, int]:
        with self._lock:
            totals: dict[Key, int] = {}
            for per in self._minutes.values():
                for key, m in per.items():
                    totals[key] = totals.get(key, 0) + m.count
            return totals

    def points(self, keys: Callable[[Key], bool] = lambda _k: True) -> list[Point]:
        """One point per minute of the window (oldest first), over the classes ``keys`` keeps."""
        with self._lock:
            now = self._refreshed_ms if self._refreshed_ms is not None else self.clock()
            first = (now // MINUTE_MS - WINDOW_MINUTES + 1) * MINUTE_MS
            out = []
            for i in range(WINDOW_MINUTES):
                minute = first + i * MINUTE_MS
                chosen = [m for k, m in self._minutes.get(minute, {}).items() if keys(k)]
                waits = [w for m in chosen for w in m.waits]
                runs = [r for m in chosen for r in m.runs]
                out.append(
                    Point(
                        minute_ms=minute,
                        finished=sum(m.count for m in chosen),
                        wait_p50_s=_quantile(waits, 0.5),
                        wait_p95_s=_quantile(waits, 0.95),
                        run_p50_s=_quantile(runs, 0.5),
                        run_p95_s=_quantile(runs, 0.95),
                    )
                )
            return out


__all__ = ["MINUTE_MS", "WINDOW_MINUTES", "JobSeries", "Key", "Point"]
