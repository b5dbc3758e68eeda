"""The beat schedule, as data: sweep name → how often it runs, in seconds.

``memtasks.worker.app`` turns this into Celery's ``beat_schedule`` (task names from
``memtasks.worker.names``, every sweep on the ``maintenance`` queue, each message expiring
after one interval). Override one interval with ``MEMTASKS_BEAT_INTERVALS``, a JSON
object such as ``{"consolidate": 300}``. Every sweep holds a Redis lock and claims its slot
in the ``sweeps`` table, so two beats running at once still produce one run per slot.
"""

from __future__ import annotations

from typing import Final

MINUTE: Final = 60.0
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

INTERVALS_S: Final[dict[str, float]] = {
    "consolidate": 10 * MINUTE,  # the time and session gates decide whether it prunes
    "recover": 1 * MINUTE,  # expired leases → ready, published at once
    "dispatch_due": 2.0,  # due rows without a live message (retries, lost messages)
    "flush_stale": 10 * MINUTE,  # seal buffers that waited too long (3-hour dedupe key)
    "self_heal": 10 * MINUTE,  # transient failures → ready with fresh attempts
    "prune_finished": DAY,  # finished jobs past MEMTASKS_RETENTION_DAYS
    "purge_retrieval_failures": DAY,  # past MEMTASKS_RETRIEVAL_FAILURE_RETENTION_DAYS
    "purge_retired": DAY,  # rows of retired job kinds (also at worker start)
    "purge_archive": HOUR,  # archived (pruned) rows past MEMTASKS_ARCHIVE_GRACE_DAYS
}
