"""Facts: one text value per ``(sender_id, key)``, written by upsert.

:meth:`Facts.upsert` is a single ``INSERT … ON CONFLICT (sender_id, key) DO UPDATE``
on both dialects, so two writers never collide on the unique constraint: the last
write wins, ``created_at_ms`` keeps the first write's time, ``updated_at_ms`` the last.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Engine, Insert, String, select
from sqlalchemy.dialects import postgresql, sqlite

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.errors import ValidationError
from memtasks.storage.memory_tables import facts
from memtasks.storage.rows import transaction

CODE_FACT_INVALID = "fact.invalid"

t = facts


def _check(sender_id: str, key: str) -> None:
    sender_max = cast(String, t.c.sender_id.type).length or 0
    key_max = cast(String, t.c.key.type).length or 0
    if not isinstance(sender_id, str) or not sender_id:
        raise ValidationError(
            f"invalid fact sender_id {sender_id!r}: must be a non-empty string", code=CODE_FACT_INVALID
        )
    if len(sender_id) > sender_max:
        raise ValidationError(
            f"invalid fact sender_id {sender_id[:40]!r}…: longer than {sender_max} characters",
            code=CODE_FACT_INVALID,
        )
    if not isinstance(key, str) or not key:
        raise ValidationError(f"invalid fact key {key!r}: must be a non-empty string", code=CODE_FACT_INVALID)
    if len(key) > key_max:
        raise ValidationError(
            f"invalid fact key {key[:40]!r}…: longer than {key_max} characters", code=CODE_FACT_INVALID
        )


class Facts:
    """Read and upsert facts; every method can join the caller's transaction (``conn``)."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    def get(self, sender_id: str, key: str, *, conn: Connection | None = None) -> str | None:
        """The value stored under ``(sender_id, key)``, or ``None``."""
        _check(sender_id, key)
        query = select(t.c.value).where(t.c.sender_id == sender_id, t.c.key == key)
        with transaction(self.engine, conn) as c:
            value = c.execute(query).scalar_one_or_none()
        return None if value is None else str(value)

    def upsert(self, sender_id: str, key: str, value: str, *, conn: Connection | None = None) -> None:
        """Store ``value`` under ``(sender_id, key)``, replacing any previous value."""
        _check(sender_id, key)
        if not isinstance(value, str):
            raise ValidationError(
                f"invalid value for fact ({sender_id!r}, {key!r}): expected text, got {type(value).__name__}",
                code=CODE_FACT_INVALID,
            )
        now = self.clock()
        with transaction(self.engine, conn) as c:
            c.execute(_upsert(c.dialect.name, sender_id, key, value, now))

    def delete(self, sender_id: str, key: str, *, conn: Connection | None = None) -> bool:
        """Remove the fact; whether a row was deleted."""
        _check(sender_id, key)
        with transaction(self.engine, conn) as c:
            result = c.execute(t.delete().where(t.c.sender_id == sender_id, t.c.key == key))
        return bool(result.rowcount)


def _upsert(dialect: str, sender_id: str, key: str, value: str, now_ms: int) -> Insert:
    """INSERT … ON CONFLICT (sender_id, key) DO UPDATE SET value, updated_at_ms, for either dialect."""
    row = {
        "sender_id": sender_id,
        "key": key,
        "value": value,
        "created_at_ms": now_ms,
        "updated_at_ms": now_ms,
    }
    if dialect == "postgresql":
        pg = postgresql.insert(t).values(row)
        return pg.on_conflict_do_update(
            index_elements=[t.c.sender_id, t.c.key],
            set_={"value": pg.excluded.value, "updated_at_ms": pg.excluded.updated_at_ms},
        )
    lite = sqlite.insert(t).values(row)
    return lite.on_conflict_do_update(
        index_elements=[t.c.sender_id, t.c.key],
        set_={"value": lite.excluded.value, "updated_at_ms": lite.excluded.updated_at_ms},
    )
