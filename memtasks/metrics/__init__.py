"""The Prometheus exporter and the job status endpoint (``memtasks metrics``).

:mod:`~memtasks.metrics.snapshot` reads the tables at most once per interval;
:mod:`~memtasks.metrics.collectors` turns that read into metrics;
:mod:`~memtasks.metrics.server` serves ``/metrics``, ``/jobs/<id>`` and ``/healthz``.
"""

from __future__ import annotations

from memtasks.metrics.collectors import DECAY_STATES, STATUSES, LoggerCollector, QueueCollector
from memtasks.metrics.snapshot import Snapshot, SnapshotCache

__all__ = ["DECAY_STATES", "STATUSES", "LoggerCollector", "QueueCollector", "Snapshot", "SnapshotCache"]
