"""Moving pruned rows into the archive, restoring them, and purging them after the grace.

A move deletes rows from their table and writes them, as they were, into its archive, in the
caller's transaction: on PostgreSQL one statement (``WITH gone AS (DELETE … RETURNING *)
INSERT INTO archive SELECT … FROM gone``, so only what was really deleted is archived); on
SQLite an ``INSERT … SELECT`` then the ``DELETE``, under the database's one write lock.

A restore copies archived rows back, batch by batch, each batch one transaction:

* a row whose id is live again with the same content counts as *already back*;
* a row whose id another row holds now (SQLite may hand a pruned id out again) is *kept*;
* a message whose conversation the agent deleted is *kept*: it is never resurrected;
* every row restored or already back leaves the archive in the same transaction, so a second
  restore of the same run restores nothing, and a row the agent deletes after a restore is
  not brought back by another one. Two restores racing insert each row once (the insert
  skips an id that is live).

Kept rows stay until the purge: the sweep deletes archived rows older than the grace period,
in bounded batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    tuple_,
)

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.errors import ValidationError
from memtasks.storage.archive_tables import (
    ARCHIVE_OF,
    archived_decay_jobs,
    archived_mem_tree_jobs,
    archived_messages,
    archived_outcomes,
)
from memtasks.storage.memory_tables import conversations, messages, outcomes
from memtasks.storage.rows import dialect_insert, reading
from memtasks.storage.tables import decay_jobs, mem_tree_jobs

DEFAULT_BATCH = 1_000
COUNTED = {"preserve_rowcount": True}
"""An ``INSERT … SELECT``'s row count is read before its cursor closes (SQLAlchemy keeps it
only for UPDATE and DELETE otherwise)."""
CODE_RESTORE = "archive.restore.invalid"


@dataclass(frozen=True, slots=True)
class Stamp:
    """When rows were archived and, for consolidation, by which run (its ledger id)."""

    at_ms: int
    run_id: int | None = None


def move_rows(
    c: Connection,
    source: Table,
    ids: Sequence[Any],
    stamp: Stamp,
    *,
    still: ColumnElement[bool] | None = None,
) -> int:
    """Delete the rows of ``source`` with ``ids`` and archive them, in ``c``'s transaction;
    the rows moved. ``still``: a condition the rows must still meet when deleted (a row
    another transaction changed meanwhile is checked again, and left alone if it fails)."""
    if not ids:
        return 0
    archive = ARCHIVE_OF[source.name]
    names = [col.name for col in source.columns]
    extra: dict[str, int] = {"archived_at_ms": stamp.at_ms}
    if "run_id" in archive.c:
        if stamp.run_id is None:
            raise ValueError(f"rows of {source.name} are archived by a run: the stamp names none")
        extra["run_id"] = stamp.run_id
    stamps = [literal(value, archive.c[name].type).label(name) for name, value in extra.items()]
    picked: ColumnElement[bool] = source.c.id.in_(list(ids))
    if still is not None:
        picked = and_(picked, still)
    if c.dialect.name == "postgresql":
        gone = delete(source).where(picked).returning(*source.c).cte("gone")
        rows = select(*(gone.c[n] for n in names), *stamps)
        moved = insert(archive).from_select([*names, *extra], rows)
        return int(c.execute(moved, execution_options=COUNTED).rowcount)
    rows = select(*(source.c[n] for n in names), *stamps).where(picked)
    c.execute(insert(archive).from_select([*names, *extra], rows))
    return int(c.execute(delete(source).where(picked)).rowcount)


@dataclass(slots=True)
class Restored:
    """What a restore did, row by row: every archived row it looked at is in one count."""

    restored: dict[str, int] = field(default_factory=lambda: {"messages": 0, "outcomes": 0})
    already_back: int = 0
    kept_conversation_gone: int = 0
    kept_id_taken: int = 0
    found: int = 0
    """Archived rows the restore looked at (0: nothing of the target is in the archive)."""

    @property
    def total_restored(self) -> int:
        return sum(self.restored.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "restored": dict(self.restored),
            "already_back": self.already_back,
            "kept_conversation_gone": self.kept_conversation_gone,
            "kept_id_taken": self.kept_id_taken,
            "found": self.found,
        }


@dataclass(frozen=True, slots=True)
class ArchivedRun:
    """A consolidation run's rows still in the archive."""

    run_id: int
    archived_at_ms: int
    messages: int
    outcomes: int


class ArchiveRepo:
    """The archive tables: what is in them, restores, and the purge after the grace period."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    # ── reading ─────────────────────────────────────────────────────────────

    def runs(self, limit: int = 50) -> list[ArchivedRun]:
        """The runs with rows in the archive, newest first."""
        found: dict[int, dict[str, int]] = {}
        with reading(self.engine) as c:
            for name, table in (("messages", archived_messages), ("outcomes", archived_outcomes)):
                query = select(table.c.run_id, func.count(), func.min(table.c.archived_at_ms)).group_by(
                    table.c.run_id
                )
                for run_id, count, at_ms in c.execute(query):
                    entry = found.setdefault(int(run_id), {"messages": 0, "outcomes": 0, "at": int(at_ms)})
                    entry[name] = int(count)
                    entry["at"] = min(entry["at"], int(at_ms))
        runs = [
            ArchivedRun(run_id, v["at"], v["messages"], v["outcomes"])
            for run_id, v in sorted(found.items(), reverse=True)
        ]
        return runs[:limit]

    def run_rows(self, run_id: int, *, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        """The first ``limit`` archived messages and outcomes of ``run_id``, by id."""
        rows: dict[str, list[dict[str, Any]]] = {}
        with reading(self.engine) as c:
            for name, table in (("messages", archived_messages), ("outcomes", archived_outcomes)):
                query = select(table).where(table.c.run_id == run_id).order_by(table.c.id).limit(limit)
                rows[name] = [dict(r._mapping) for r in c.execute(query)]
        return rows

    def counts(self) -> dict[str, int]:
        """Rows in each archive table."""
        with reading(self.engine) as c:
            return {
                name: int(c.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in ARCHIVE_OF.items()
            }

    def archived_job(self, job_id: str) -> tuple[str, dict[str, Any]] | None:
        """An archived job by id: its table's name and its row."""
        with reading(self.engine) as c:
            for source, table in (
                ("mem_tree_jobs", archived_mem_tree_jobs),
                ("decay_jobs", archived_decay_jobs),
            ):
                row = c.execute(select(table).where(table.c.id == job_id)).first()
                if row is not None:
                    return source, dict(row._mapping)
        return None

    # ── restoring ───────────────────────────────────────────────────────────

    def restore_run(self, run_id: int, *, batch: int = DEFAULT_BATCH) -> Restored:
        """Every archived message and outcome of consolidation run ``run_id``."""
        done = Restored()
        for source, archive in ((messages, archived_messages), (outcomes, archived_outcomes)):
            self._restore(source, archive, archive.c.run_id == run_id, batch, done)
        return done

    def restore_conversation(self, conversation_id: str, *, batch: int = DEFAULT_BATCH) -> Restored:
        """Every archived message of one conversation, whichever runs archived them."""
        done = Restored()
        where = archived_messages.c.conversation_id == conversation_id
        self._restore(messages, archived_messages, where, batch, done)
        return done

    def restore_job(self, job_id: str) -> Restored:
        """One archived job back into its table (``restored`` counts it under its table)."""
        done = Restored(restored={"mem_tree_jobs": 0, "decay_jobs": 0})
        for source in (mem_tree_jobs, decay_jobs):
            archive = ARCHIVE_OF[source.name]
            self._restore(source, archive, archive.c.id == job_id, 1, done)
        return done

    def _restore(
        self, source: Table, archive: Table, where: ColumnElement[bool], batch: int, done: Restored
    ) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValidationError(f"invalid batch size {batch!r}: must be an integer ≥ 1", code=CODE_RESTORE)
        for keys in self._key_batches(archive, where, batch):
            with self.engine.begin() as c:
                self._restore_batch(c, source, archive, keys, done)

    def _key_batches(
        self, archive: Table, where: ColumnElement[bool], batch: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The archive's keys under ``where``, ``batch`` at a time, in key order (a keyset:
        kept rows are not read twice)."""
        key = list(archive.primary_key.columns)
        after: tuple[Any, ...] | None = None
        while True:
            query = select(*key).where(where).order_by(*key).limit(batch)
            if after is not None:
                query = query.where(_key(archive) > tuple_(*(literal(v) for v in after)))
            with reading(self.engine) as c:
                keys = [tuple(r) for r in c.execute(query)]
            if not keys:
                return
            yield keys
            after = keys[-1]
            if len(keys) < batch:
                return

    def _restore_batch(
        self, c: Connection, source: Table, archive: Table, keys: list[tuple[Any, ...]], done: Restored
    ) -> None:
        names = [col.name for col in source.columns]
        in_batch = _key(archive).in_(keys)
        live = exists().where(source.c.id == archive.c.id)
        conditions: list[ColumnElement[bool]] = [in_batch, ~live]
        if source is messages:
            conditions.append(exists().where(conversations.c.id == archive.c.conversation_id))
        copy = select(*(archive.c[n] for n in names)).where(*conditions)
        # ON CONFLICT: skip a row whose id another transaction made live meanwhile.
        stmt = dialect_insert(c, source).from_select(names, copy).on_conflict_do_nothing()
        restored = int(c.execute(stmt, execution_options=COUNTED).rowcount)
        same = exists().where(
            source.c.id == archive.c.id, *(source.c[n].is_not_distinct_from(archive.c[n]) for n in names)
        )
        removed = int(c.execute(delete(archive).where(in_batch, same)).rowcount)
        kept = len(keys) - removed
        gone = 0
        if kept and source is messages:
            orphan = and_(in_batch, ~exists().where(conversations.c.id == archive.c.conversation_id))
            gone = int(c.execute(select(func.count()).select_from(archive).where(orphan)).scalar_one())
        done.found += len(keys)
        done.restored[source.name] = done.restored.get(source.name, 0) + restored
        done.already_back += removed - restored
        done.kept_conversation_gone += gone
        done.kept_id_taken += kept - gone

    # ── the purge ───────────────────────────────────────────────────────────

    def purge(self, grace_ms: int, *, batch: int = 5_000) -> dict[str, int]:
        """Delete archived rows archived more than ``grace_ms`` ago, ``batch`` per transaction;
        how many per archive table."""
        if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or grace_ms < 0:
            raise ValidationError(f"invalid grace {grace_ms!r}: must be milliseconds ≥ 0", code=CODE_RESTORE)
        cutoff = self.clock() - grace_ms
        purged: dict[str, int] = {}
        for name, table in ARCHIVE_OF.items():
            picked = select(*table.primary_key.columns).where(table.c.archived_at_ms < cutoff).limit(batch)
            total = 0
            while True:
                with self.engine.begin() as c:
                    n = int(c.execute(delete(table).where(_key(table).in_(picked))).rowcount)
                total += n
                if n < batch:
                    break
            purged[name] = total
        return purged


def _key(table: Table) -> Any:
    """The table's primary key as one comparable value: ``(run_id, id)`` or ``(id)``."""
    return tuple_(*table.primary_key.columns)


__all__ = ["ArchiveRepo", "ArchivedRun", "Restored", "Stamp", "move_rows"]
