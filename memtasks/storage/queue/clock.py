"""The database's clock, for the host-side code that needs "now".

The queue's statements read the database's time themselves. Code on a host that needs the
time too (a delay turned into a due time, a report's window) uses :func:`database_clock`:
the database's time, read once and then every ``refresh_s``, carried forward in between on
the host's monotonic clock — so hosts whose wall clocks disagree still agree on "now".
"""

from __future__ import annotations

import threading
import time
import weakref

from sqlalchemy import Engine

from memtasks.storage.queue.execute import Executor
from memtasks.storage.queue.statements import database_now_sql

REFRESH_S = 30.0


class DatabaseClock:
    """A :data:`~memtasks.domain.clock.Clock` that tells the database's time."""

    def __init__(self, engine: Engine, *, refresh_s: float = REFRESH_S) -> None:
        self._executor = Executor(engine)
        self._sql = database_now_sql(engine.dialect.name)
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._base_ms = 0
        self._read_at = -float("inf")

    def __call__(self) -> int:
        mono = time.monotonic()
        with self._lock:
            if mono - self._read_at >= self._refresh_s:
                before = time.monotonic()
                [row] = self._executor.run(self._sql, {"now": None}).rows
                after = time.monotonic()
                self._base_ms = int(next(iter(row.values())))
                self._read_at = (before + after) / 2
                mono = after
            return self._base_ms + int((mono - self._read_at) * 1000)


_clocks: weakref.WeakKeyDictionary[Engine, DatabaseClock] = weakref.WeakKeyDictionary()
_clocks_lock = threading.Lock()


def database_clock(engine: Engine) -> DatabaseClock:
    """The one :class:`DatabaseClock` of ``engine`` in this process."""
    with _clocks_lock:
        clock = _clocks.get(engine)
        if clock is None:
            clock = _clocks[engine] = DatabaseClock(engine)
        return clock


__all__ = ["DatabaseClock", "database_clock"]
