"""How long finished jobs ran and waited, as cumulative histograms kept by the exporter.

Prometheus histograms are counters: each bucket counts every observation so far at or
below its bound, and only grows (a process restart starts them again from zero, which
Prometheus' ``rate`` and ``histogram_quantile`` handle). So the exporter does not recount
the tables at each refresh: :meth:`JobTimings.advance` reads only the rows that finished
since its watermark (through the index on ``completed_at_ms``, at most ``limit`` per table
and refresh) and adds them to the buckets.

* **run time** = ``completed_at − started_at`` of the attempt that finished the job;
* **wait** = ``started_at − max(created_at, due time)``: a job scheduled for later has not
  waited before it was due, and a retried job waits from its retry's due time.

Jobs that finished ``done`` or ``failed`` count; a cancelled job never ran. A job counts
once its completion is ``grace_ms`` old (the stamp is taken before its transaction commits,
so a younger row may still be invisible); the first refresh starts the watermark there
(``since_ms`` to start elsewhere), so the histograms describe the jobs that finished while
the exporter ran.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine

from memtasks.storage.stats_repo import FinishedJob, JobTable, Watermark, finished_after

log = logging.getLogger("memtasks.metrics")

BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
)  # fmt: skip
"""Upper bounds in seconds, 5 ms to 4 h (+Inf beyond)."""
SETTLE_GRACE_MS = 10_000
READ_LIMIT = 50_000

JobClass = tuple[JobTable, str, bool]
"""What a histogram is kept per: the table, the kind, whether it is an LLM summary (decay)."""


@dataclass(frozen=True, slots=True)
class HistogramData:
    """One histogram as exposed: cumulative counts per bound of :data:`BUCKETS_S`, then +Inf."""

    cumulative: tuple[int, ...]
    sum_s: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]

    @classmethod
    def empty(cls) -> HistogramData:
        return cls((0,) * (len(BUCKETS_S) + 1), 0.0)


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1  # le: a value on a bound counts in it
        self.sum_s += seconds

    def data(self) -> HistogramData:
        running, cumulative = 0, []
        for count in self.counts:
            running += count
            cumulative.append(running)
        return HistogramData(tuple(cumulative), self.sum_s)


@dataclass(frozen=True, slots=True)
class TimingsView:
    """A copy of every histogram, safe to read while the next refresh goes on."""

    run: Mapping[JobClass, HistogramData]
    wait: Mapping[JobClass, HistogramData]
    observed: int


def run_seconds(job: FinishedJob) -> float:
    return max(0, job.completed_at_ms - job.started_at_ms) / 1000


def wait_seconds(job: FinishedJob) -> float:
    return max(0, job.started_at_ms - job.due_at_ms) / 1000


class JobTimings:
    """The run-time and wait histograms of both job tables. Not thread-safe: one refresher."""

    def __init__(
        self,
        engine: Engine,
        *,
        grace_ms: int = SETTLE_GRACE_MS,
        limit: int = READ_LIMIT,
        since_ms: int | None = None,
    ) -> None:
        self.engine = engine
        self.grace_ms = grace_ms
        self.limit = limit
        self.since_ms = since_ms
        self._marks: dict[JobTable, Watermark] = {}
        self._run: dict[JobClass, _Histogram] = {}
        self._wait: dict[JobClass, _Histogram] = {}
        self._observed = 0

    def advance(self, now_ms: int) -> int:
        """Add the jobs finished since the last call (up to ``now_ms − grace_ms``); how many."""
        until = now_ms - self.grace_ms
        added = 0
        for table in JobTable:
            mark = self._marks.get(table)
            if mark is None:
                mark = self._marks[table] = Watermark(until if self.since_ms is None else self.since_ms)
            jobs = finished_after(self.engine, table, mark, until, self.limit)
            for job in jobs:
                key = (job.table, job.kind, job.llm)
                self._run.setdefault(key, _Histogram()).observe(run_seconds(job))
                self._wait.setdefault(key, _Histogram()).observe(wait_seconds(job))
            if jobs:
                self._marks[table] = jobs[-1].watermark
                added += len(jobs)
            if len(jobs) == self.limit:
                log.info("memtasks.metrics: %s jobs finish faster than one read takes in; catching up", table)
        self._observed += added
        return added

    def view(self) -> TimingsView:
        return TimingsView(
            run={key: h.data() for key, h in self._run.items()},
            wait={key: h.data() for key, h in self._wait.items()},
            observed=self._observed,
        )


__all__ = [
    "BUCKETS_S",
    "HistogramData",
    "JobClass",
    "JobTable",
    "JobTimings",
    "TimingsView",
    "run_seconds",
    "wait_seconds",
]
