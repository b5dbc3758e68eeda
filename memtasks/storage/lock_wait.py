"""What a statement that gave up waiting for a lock looks like, whatever the driver.

On PostgreSQL every memtasks session waits at most ``lock_timeout`` for a row lock
(:func:`memtasks.storage.engine.session_settings`); the statement then fails with SQLSTATE
``55P03``. On SQLite a writer waits ``busy_timeout`` for the database's write lock, then
fails with "database is locked". Either way the lock belongs to another transaction — a
slow one, or one whose host vanished and whose session the server has not ended yet — and
the work should step aside and come back, not count as a failure of its own.
"""

from __future__ import annotations

LOCK_NOT_AVAILABLE = "55P03"
SQLITE_LOCKED = ("database is locked", "database table is locked")


def is_lock_timeout(exc: BaseException) -> bool:
    """True when ``exc`` (or the driver error it wraps) is a lock wait that timed out."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        if type(current).__module__.startswith("sqlite3") and any(
            marker in str(current).lower() for marker in SQLITE_LOCKED
        ):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False


__all__ = ["LOCK_NOT_AVAILABLE", "is_lock_timeout"]
