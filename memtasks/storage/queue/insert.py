"""Enqueue: new rows of a job table in one statement per chunk, duplicates skipped.

PostgreSQL gets one ``INSERT … SELECT unnest(array), unnest(array) …`` per chunk: each column
travels as a single array parameter, so the statement and its plan are the same for any
number of rows (a multi-row VALUES list would cost a fresh compilation with a parameter per
value). Arrays travel in psycopg's binary format (``%(name)b``): the text format quotes and escapes
each element in Python, which cost more than the insert itself. A value every row shares (the
state of a new row, its creation time) travels once, as a scalar. SQLite takes the rows as
one executemany. Where the table has a dedupe key, a row
whose key an active row holds is skipped (``ON CONFLICT … DO NOTHING``) and its id is not
returned. Rows whose ids the caller chose (a producer that has only the broker) skip any
conflict, their id's included (``ON CONFLICT DO NOTHING``): a redelivered message inserts
nothing the second time.

**Fair share.** Each new row gets its place in its lane (``fair_seq``, see
:mod:`memtasks.domain.fairness`) from where each lane of the batch ends now: one read before
the insert, a ``max(fair_seq)`` per lane through the lane index (``fair_key, fair_seq`` over
ready rows), in the caller's transaction when there is one. Two producers of one lane racing
may give two jobs the same place; either may be claimed first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, Connection, Engine, Insert, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from memtasks.domain.fairness import SHARED_LANE, places
from memtasks.domain.lifecycle import Phase
from memtasks.storage.queue.execute import Executor
from memtasks.storage.queue.table import QueueTable
from memtasks.storage.rows import chunks, reading, transaction

UNNEST_CHUNK = 10_000
"""Rows per PostgreSQL insert statement."""


class Inserter:
    def __init__(self, table: QueueTable) -> None:
        self.table = table
        self._built: dict[tuple[str, tuple[str, ...], tuple[str, ...], bool], Insert] = {}
        self._compiled: dict[tuple[tuple[str, ...], tuple[str, ...], bool], str] = {}

    def _statement(
        self, dialect: str, columns: tuple[str, ...], shared: tuple[str, ...] = (), any_conflict: bool = False
    ) -> Insert:
        key = (dialect, columns, shared, any_conflict)
        stmt = self._built.get(key)
        if stmt is None:
            stmt = self._built[key] = self._build(dialect, columns, shared, any_conflict)
        return stmt

    def _build(
        self, dialect: str, columns: tuple[str, ...], shared: tuple[str, ...], any_conflict: bool
    ) -> Insert:
        t = self.table.table
        if dialect == "postgresql":
            # psycopg's dialect renders each typed parameter with its cast: unnest(%(id)s::VARCHAR(64)[])
            arrays = [func.unnest(bindparam(name, type_=ARRAY(t.c[name].type))) for name in columns]
            scalars = [bindparam(name, type_=t.c[name].type) for name in shared]
            targets = [t.c[name] for name in (*columns, *shared)]
            stmt: Any = postgresql.insert(t).from_select(targets, select(*arrays, *scalars))
        else:
            stmt = sqlite.insert(t)
        if any_conflict:  # the primary key and the dedupe index alike
            stmt = stmt.on_conflict_do_nothing()
        elif self.table.dedupe is not None and self.table.dedupe_where is not None:
            stmt = stmt.on_conflict_do_nothing(
                index_elements=[t.c[self.table.dedupe]], index_where=text(self.table.dedupe_where)
            )
        result: Insert = stmt.returning(t.c.id)
        return result

    def _postgresql_sql(
        self, engine: Engine, columns: tuple[str, ...], shared: tuple[str, ...], any_conflict: bool
    ) -> str:
        """The statement compiled once to the driver's SQL (SQLAlchemy would compile it anew
        each time: its cache does not take this statement)."""
        key = (columns, shared, any_conflict)
        sql = self._compiled.get(key)
        if sql is None:
            stmt = self._statement("postgresql", columns, shared, any_conflict)
            sql = str(stmt.compile(dialect=engine.dialect))
            for name in columns:  # arrays travel in binary: no quoting and escaping per element
                sql = sql.replace(f"%({name})s", f"%({name})b")
            self._compiled[key] = sql
        return sql

    def insert(
        self,
        engine: Engine,
        rows: Sequence[dict[str, Any]],
        conn: Connection | None,
        shared: Mapping[str, Any] | None = None,
        *,
        any_conflict: bool = False,
    ) -> set[str]:
        """Insert ``rows`` (every row with the same keys), each also taking the values of
        ``shared``; the ids inserted. ``any_conflict``: skip a row that conflicts on any unique
        index, its id included (ids chosen by the caller), not only on the dedupe key."""
        common = dict(shared or {})
        self._place(engine, rows, common, conn)
        columns = tuple(rows[0])
        if engine.dialect.name != "postgresql":
            with transaction(engine, conn) as c:
                whole = [{**row, **common} for row in rows] if common else list(rows)
                stmt = self._statement("sqlite", tuple(whole[0]), (), any_conflict)
                return {r[0] for r in c.execute(stmt, whole)}
        sql = self._postgresql_sql(engine, columns, tuple(common), any_conflict)
        executor = Executor(engine)
        parts = [
            {**common, **{name: [row[name] for row in part] for name in columns}}
            for part in chunks(rows, UNNEST_CHUNK)
        ]
        if conn is None and len(parts) == 1:  # one statement: its own transaction, one round trip
            return {r["id"] for r in executor.run(sql, parts[0]).rows}
        with transaction(engine, conn) as c:
            return {r["id"] for part in parts for r in executor.run(sql, part, c).rows}

    def _place(
        self,
        engine: Engine,
        rows: Sequence[dict[str, Any]],
        common: Mapping[str, Any],
        conn: Connection | None,
    ) -> None:
        """Give each row its lane (``fair_key``, the shared lane if none) and its place in it."""
        due = self.table.due
        lanes = [str(row.get("fair_key") or SHARED_LANE) for row in rows]
        dues = [int(row[due] if due in row else common[due]) for row in rows]
        ends = self.lane_ends(engine, sorted(set(lanes)), conn)
        for row, lane, seq in zip(rows, lanes, places(lanes, dues, ends), strict=True):
            row["fair_key"] = lane
            row["fair_seq"] = seq

    def lane_ends(
        self, engine: Engine, lanes: Sequence[str], conn: Connection | None
    ) -> dict[str, int | None]:
        """The largest ``fair_seq`` of each lane's ready rows (None: none), in one statement."""
        t, status = self.table.table, self.table.table.c[self.table.status]
        ready = self.table.word(Phase.READY)
        ends = [
            select(func.max(t.c.fair_seq)).where(status == ready, t.c.fair_key == lane).scalar_subquery()
            for lane in lanes
        ]
        query = select(*ends)
        if conn is not None:
            found = conn.execute(query).one()
        else:
            with reading(engine) as c:
                found = c.execute(query).one()
        return {lane: None if end is None else int(end) for lane, end in zip(lanes, found, strict=True)}


__all__ = ["UNNEST_CHUNK", "Inserter"]
