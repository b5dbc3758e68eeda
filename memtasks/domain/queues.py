"""The queue names: the one list, which the worker's routing, the settings' check of
``MEMTASKS_WORKER_QUEUES`` and ``memtasks worker`` all derive from."""

from __future__ import annotations

from typing import Final

CRITICAL: Final = "critical"
DEFAULT: Final = "default"
BULK: Final = "bulk"
LLM: Final = "llm"
MAINTENANCE: Final = "maintenance"
QUEUES: Final = (CRITICAL, DEFAULT, BULK, LLM, MAINTENANCE)
"""Every queue a memtasks worker may consume (a worker consumes all of them by default)."""
