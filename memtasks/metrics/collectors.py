"""The Prometheus collectors: the job tables (from the shared snapshot) and a logger's counters.

:class:`QueueCollector` answers every scrape from :class:`~memtasks.metrics.snapshot.SnapshotCache`,
which reads the tables at most once per interval: gauges of what the tables hold (jobs by
queue, kind and status, waiting ages, expired leases, failures, the consolidation ledger,
sweeps) and cumulative histograms of how long finished jobs ran and waited. Flower's own
``/metrics`` reports what Celery sees (messages and workers); this reports the tables.
A process that hosts a :class:`~memtasks.services.retrieval_failures.RetrievalFailureLogger`
can add :class:`LoggerCollector` for that logger's counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.decay import DecayState
from memtasks.domain.jobs import JobStatus
from memtasks.metrics.snapshot import DEFAULT_INTERVAL_S, Snapshot, SnapshotCache
from memtasks.services.job_timings import BUCKETS_S, HistogramData, JobClass, JobTable
from memtasks.services.retrieval_failures import RetrievalFailureLogger
from memtasks.services.status import StatusReport
from memtasks.worker.routing import decay_queue_for, queue_of

STATUSES = tuple(status.value for status in JobStatus)
DECAY_STATES = tuple(state.value for state in DecayState)
BOUNDS = (*(str(float(bound)) for bound in BUCKETS_S), "+Inf")

RUN_HELP = (
    "Run time of finished jobs (done or failed): completed_at - started_at of the attempt that "
    "finished the job; counted when the exporter's read sees the job finished"
)
WAIT_HELP = (
    "Wait of finished jobs before their last attempt started: started_at - max(created_at, due "
    "time); a job scheduled for later has not waited before it was due"
)


class QueueCollector(Collector):
    """The tables' gauges and the job histograms, from the snapshot shared by every scrape.

    ``memtasks_up`` is 0 when the last read failed; the table gauges are then left out
    (stale counts would pass for current ones) while the histograms, counters of the jobs
    already seen, stay.
    """

    def __init__(
        self,
        source: SnapshotCache | Engine,
        *,
        clock: Clock = system_clock,
        tree_uses_llm: bool = False,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.cache = (
            source
            if isinstance(source, SnapshotCache)
            else SnapshotCache(source, interval_s=interval_s, clock=clock)
        )
        self.tree_uses_llm = tree_uses_llm

    def describe(self) -> list[Metric]:
        return []  # collected from the snapshot: no describe-time database access

    def collect(self) -> Iterator[Metric]:
        snapshot = self.cache.get()
        up = GaugeMetricFamily("memtasks_up", "1 when the exporter's last read of the job tables succeeded")
        up.add_metric([], 1 if snapshot.ok else 0)
        yield up
        yield from self._about_the_read(snapshot)
        if snapshot.report is not None:
            yield from self._tables(snapshot.report)
        yield from self._histograms(snapshot)

    def _about_the_read(self, snapshot: Snapshot) -> Iterator[Metric]:
        age = self.cache.age_s(snapshot)
        if age is not None:
            yield GaugeMetricFamily(
                "memtasks_metrics_snapshot_age_seconds",
                "Seconds since the exporter last read the job tables successfully (every scrape "
                "answers from that read; one read per interval)",
                value=age,
            )
        yield GaugeMetricFamily(
            "memtasks_metrics_read_duration_seconds",
            "How long the exporter's last read of the job tables took",
            value=snapshot.read_s,
        )
        yield CounterMetricFamily(
            "memtasks_metrics_reads",
            "Reads of the job tables by this exporter (at most one per interval, whatever the scrape rate)",
            value=self.cache.reads,
        )

    def _queue(self, key: JobClass) -> str:
        table, kind, llm = key
        if table is JobTable.DECAY:
            return decay_queue_for(llm=llm)
        return queue_of(kind, tree_uses_llm=self.tree_uses_llm)

    def _tables(self, report: StatusReport) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "memtasks_jobs", "Memory-tree jobs by queue, kind and status", labels=["queue", "kind", "status"]
        )
        oldest = GaugeMetricFamily(
            "memtasks_oldest_ready_age_seconds",
            "How long the oldest due ready job has waited (0: none waits)",
            labels=["queue", "kind"],
        )
        expired = GaugeMetricFamily(
            "memtasks_expired_leases", "Running memory-tree jobs whose lease has expired", labels=["kind"]
        )
        retrying = GaugeMetricFamily(
            "memtasks_jobs_waiting_retry", "Ready memory-tree jobs that failed before", labels=["kind"]
        )
        failed = GaugeMetricFamily(
            "memtasks_failed_jobs",
            "Failed memory-tree jobs by failure class",
            labels=["kind", "failure_class"],
        )
        for kind in report.queue.kinds:
            queue = queue_of(kind.kind, tree_uses_llm=self.tree_uses_llm)
            for status in STATUSES:
                jobs.add_metric([queue, kind.kind, status], kind.by_status.get(status, 0))
            oldest.add_metric([queue, kind.kind], (kind.oldest_ready_age_ms or 0) / 1000)
            expired.add_metric([kind.kind], kind.expired_leases)
            retrying.add_metric([kind.kind], kind.waiting_retry)
            for failure_class, count in sorted(kind.failed_by_class.items()):
                failed.add_metric([kind.kind, failure_class], count)
        yield from (jobs, oldest, expired, retrying, failed)

        lane_ready = GaugeMetricFamily(
            "memtasks_lane_ready_jobs",
            "Ready memory-tree jobs per fair-share lane (agent or tenant; '' the shared lane),"
            " the 20 largest lanes",
            labels=["lane"],
        )
        lane_wait = GaugeMetricFamily(
            "memtasks_lane_oldest_due_age_seconds",
            "How long the oldest due ready job of each of those lanes has waited (0: none waits)",
            labels=["lane"],
        )
        for lane in report.queue.lanes:
            lane_ready.add_metric([lane.lane], lane.ready)
            lane_wait.add_metric([lane.lane], (lane.oldest_due_age_ms or 0) / 1000)
        yield from (lane_ready, lane_wait)

        spent = GaugeMetricFamily(
            "memtasks_llm_spent",
            "LLM spend of each budget scope (fleet, agent:<lane>) in its newest period, in the unit"
            " the model plug-ins report",
            labels=["scope"],
        )
        reserved = GaugeMetricFamily(
            "memtasks_llm_reserved",
            "What the admitted LLM-bound jobs in flight are expected to cost, per scope",
            labels=["scope"],
        )
        period = GaugeMetricFamily(
            "memtasks_llm_period_start_timestamp_seconds",
            "Start of the period memtasks_llm_spent counts, per scope",
            labels=["scope"],
        )
        for row in report.llm_spend:
            spent.add_metric([row.scope], row.spent)
            reserved.add_metric([row.scope], row.reserved)
            period.add_metric([row.scope], row.period_start_ms / 1000)
        yield from (spent, reserved, period)

        decay = GaugeMetricFamily("memtasks_decay_jobs", "Decay jobs by state", labels=["state"])
        for state in sorted(set(DECAY_STATES) | set(report.queue.decay_by_state)):
            decay.add_metric([state], report.queue.decay_by_state.get(state, 0))
        yield decay
        yield GaugeMetricFamily(
            "memtasks_decay_expired_leases",
            "In-progress decay jobs whose lease has expired",
            value=report.queue.decay_expired_leases,
        )

        runs = GaugeMetricFamily(
            "memtasks_consolidation_runs",
            "Consolidation ledger rows by outcome (ran, skipped, failed, dry_run)",
            labels=["outcome"],
        )
        for outcome, count in sorted(report.consolidation_runs_by_outcome.items()):
            runs.add_metric([outcome], count)
        yield runs
        if report.last_consolidation is not None:
            yield GaugeMetricFamily(
                "memtasks_last_consolidation_timestamp_seconds",
                "Start of the newest consolidation that ran (never a dry run, a skip or a failure)",
                value=report.last_consolidation.started_at_ms / 1000,
            )

        summaries = GaugeMetricFamily("memtasks_tree_summaries", "Memory-tree summaries", labels=["level"])
        for level, count in sorted(report.summaries_by_level.items()):
            summaries.add_metric([str(level)], count)
        yield summaries
        yield GaugeMetricFamily(
            "memtasks_retrieval_failures", "Retrieval failures stored", value=report.retrieval_failures_total
        )

        sweep = GaugeMetricFamily(
            "memtasks_sweep_last_run_timestamp_seconds", "Start of each sweep's last run", labels=["sweep"]
        )
        sweep_ok = GaugeMetricFamily(
            "memtasks_sweep_last_run_ok", "1 when the sweep's last run succeeded", labels=["sweep"]
        )
        for record in report.sweeps:
            sweep.add_metric([record.name], record.started_at_ms / 1000)
            sweep_ok.add_metric([record.name], 1 if record.outcome == "ok" else 0)
        yield from (sweep, sweep_ok)

    def _histograms(self, snapshot: Snapshot) -> Iterator[Metric]:
        known: set[JobClass] = set(snapshot.timings.run)
        if (
            snapshot.report is not None
        ):  # a series per kind in the tables, from 0, so rate() sees the first job
            known |= {(JobTable.MEM_TREE, k.kind, False) for k in snapshot.report.queue.kinds}
        for name, doc, data in (
            ("memtasks_job_run_seconds", RUN_HELP, snapshot.timings.run),
            ("memtasks_job_wait_seconds", WAIT_HELP, snapshot.timings.wait),
        ):
            family = HistogramMetricFamily(name, doc, labels=["queue", "kind"])
            for key in sorted(known, key=lambda k: (self._queue(k), k[1], k[0].value)):
                family.add_metric([self._queue(key), key[1]], *_buckets(data, key))
            yield family


def _buckets(data: Mapping[JobClass, HistogramData], key: JobClass) -> tuple[list[tuple[str, float]], float]:
    histogram = data.get(key) or HistogramData.empty()
    return [(bound, float(n)) for bound, n in zip(BOUNDS, histogram.cumulative, strict=True)], histogram.sum_s


LOGGER_COUNTERS = (
    ("logged", "Retrieval failures handed to log(), whatever became of them"),
    ("written", "Retrieval failures the sink wrote (committed)"),
    (
        "dropped",
        "Retrieval failures refused by log() and never queued: the queue was full, or the "
        "logger was shut down",
    ),
    (
        "lost",
        "Retrieval failures queued but never written: their batch failed after its retries, "
        "the writer thread died, or shutdown timed out before they were written",
    ),
    ("batches", "Batches the sink wrote"),
    ("retries", "Batch writes retried after a sink error"),
)


class LoggerCollector(Collector):
    """The counters of one retrieval-failure logger (in the process that hosts it):
    ``logged == written + dropped + lost + pending``."""

    def __init__(self, logger: RetrievalFailureLogger) -> None:
        self.logger = logger

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.logger.stats()
        for field, doc in LOGGER_COUNTERS:
            # The exposition name gets ``_total`` (memtasks_retrieval_failures_logged_total, …).
            yield CounterMetricFamily(
                f"memtasks_retrieval_failures_{field}", doc, value=getattr(stats, field)
            )
        yield GaugeMetricFamily(
            "memtasks_retrieval_failures_pending",
            "Retrieval failures queued or being written, not yet written nor lost",
            value=stats.pending,
        )


__all__ = ["DECAY_STATES", "STATUSES", "LoggerCollector", "QueueCollector"]
