"""One leased-queue engine for every job table (see ``engine``), its SQL (``sql_*``, rendered
by ``statements``), the tables it runs (``table``) and the operator side (``admin``)."""

from memtasks.storage.queue.admin import QueueAdmin
from memtasks.storage.queue.engine import FailureOutcome, LeasedQueue, QueueConfig, RecoverResult
from memtasks.storage.queue.table import DECAY, MEM_TREE, QueueTable

__all__ = [
    "DECAY",
    "MEM_TREE",
    "FailureOutcome",
    "LeasedQueue",
    "QueueAdmin",
    "QueueConfig",
    "QueueTable",
    "RecoverResult",
]
