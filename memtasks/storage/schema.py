"""The complete schema: every table of memtasks registered on one ``metadata``."""

from __future__ import annotations

from memtasks.storage import archive_tables, memory_tables, tables
from memtasks.storage.tables import metadata

__all__ = ["archive_tables", "memory_tables", "metadata", "tables"]
