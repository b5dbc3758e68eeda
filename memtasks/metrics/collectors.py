"""Prometheus gauges of the SQL queue, read from the database at each scrape.

``memtasks metrics --port 9808`` serves them next to Flower's own ``/metrics`` (Flower
reports what Celery sees: messages and workers; this exporter reports what the tables
hold: jobs by queue, kind and status, waiting ages, expired leases, failures, sweeps).
A process that hosts a :class:`~memtasks.services.retrieval_failures.RetrievalFailureLogger`
can add :class:`LoggerCollector` to report the records it logged, wrote and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.jobs import JobStatus
from memtasks.domain.masking import mask_urls_in
from memtasks.services.retrieval_failures import RetrievalFailureLogger
from memtasks.services.status import status_report
from memtasks.worker.routing import queue_of

log = logging.getLogger("memtasks.metrics")

STATUSES = tuple(status.value for status in JobStatus)


class QueueCollector(Collector):
    """Reads the job tables on every scrape. ``memtasks_up`` is 0 when the database is not readable."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock, tree_uses_llm: bool = False) -> None:
        self.engine = engine
        self.clock = clock
        self.tree_uses_llm = tree_uses_llm

    def describe(self) -> list[Metric]:
        return []  # collected live: no describe-time database access

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("memtasks_up", "1 when the job tables could be read")
        try:
            report = status_report(self.engine, self.clock)
        except Exception as exc:
            log.warning("memtasks.metrics: cannot read the job tables: %s", mask_urls_in(str(exc)))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily("memtasks_jobs", "Memory-tree jobs", labels=["queue", "kind", "status"])
        oldest = GaugeMetricFamily(
            "memtasks_oldest_ready_age_seconds", "Wait of the oldest due ready job", labels=["queue", "kind"]
        )
        expired = GaugeMetricFamily(
            "memtasks_expired_leases", "Running jobs whose lease has expired", labels=["kind"]
        )
        retrying = GaugeMetricFamily(
            "memtasks_jobs_waiting_retry", "Ready jobs that failed before", labels=["kind"]
        )
        failed = GaugeMetricFamily(
            "memtasks_failed_jobs", "Failed jobs by failure class", labels=["kind", "failure_class"]
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

        decay = GaugeMetricFamily("memtasks_decay_jobs", "Decay jobs by state", labels=["state"])
        for state, count in sorted(report.queue.decay_by_state.items()):
            decay.add_metric([state], count)
        yield decay

        runs = GaugeMetricFamily(
            "memtasks_consolidation_runs", "Consolidation ledger rows by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(report.consolidation_runs_by_outcome.items()):
            runs.add_metric([outcome], count)
        yield runs
        if report.last_consolidation is not None:
            last = GaugeMetricFamily(
                "memtasks_last_consolidation_timestamp_seconds", "Start of the newest consolidation run"
            )
            last.add_metric([], report.last_consolidation.started_at_ms / 1000)
            yield last

        summaries = GaugeMetricFamily("memtasks_tree_summaries", "Memory-tree summaries", labels=["level"])
        for level, count in sorted(report.summaries_by_level.items()):
            summaries.add_metric([str(level)], count)
        yield summaries

        stored = GaugeMetricFamily("memtasks_retrieval_failures", "Retrieval failures stored")
        stored.add_metric([], report.retrieval_failures_total)
        yield stored

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


class LoggerCollector(Collector):
    """The counters of one retrieval-failure logger (in the process that hosts it)."""

    def __init__(self, logger: RetrievalFailureLogger) -> None:
        self.logger = logger

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.logger.stats()
        for name, value, doc in (
            ("memtasks_retrieval_failures_logged", stats.logged, "Records handed to log()"),
            ("memtasks_retrieval_failures_written", stats.written, "Records written by the sink"),
            (
                "memtasks_retrieval_failures_dropped",
                stats.dropped,
                "Records dropped (queue full or sink failed)",
            ),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter


__all__ = ["LoggerCollector", "QueueCollector"]
