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
:mod:`memtasks.domain.fairness`) from where its lane ends now — a ``max(fair_seq)`` per lane of
the statement through the lane index (``fair_key, fair_seq`` over ready rows): on PostgreSQL
inside the insert statement itself (no extra round trip), on SQLite read first in the insert's
transaction. Two producers of one lane racing may give two jobs the same place; either may be
claimed first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Insert,
    Integer,
    bindparam,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from memtasks.domain.fairness import SHARED_LANE, places
from memtasks.domain.lifecycle import Phase
from memtasks.storage.queue.execute import Executor
from memtasks.storage.queue.table import QueueTable
from memtasks.storage.rows import chunks, transaction

UNNEST_CHUNK = 10_000
"""Rows per PostgreSQL insert statement."""
RANK = "_rank"
"""The array of each row's rank in its lane within the statement (1, 2, …)."""
LANES = "_lanes"
"""The array of the statement's distinct lanes."""
LANE = "_lane"
"""The lane of a statement whose rows are all of one lane."""

# Written into the SQL as constants (the statement is compiled once and run with the arrays
# only; the ready state must be a literal for the planner to use the partial lane index).
READY_WORDS: dict[str, Any] = {"ready": literal_column("'ready'"), "pending": literal_column("'pending'")}
"""Each job table's word for a ready row, as an SQL literal."""
SPACING: Any = literal_column("1000")
"""LANE_SPACING_MS as an SQL literal (a test holds them equal)."""


class Inserter:
    def __init__(self, table: QueueTable) -> None:
        self.table = table
        self._built: dict[tuple[str, tuple[str, ...], tuple[str, ...], bool, bool], Insert] = {}
        self._compiled: dict[tuple[tuple[str, ...], tuple[str, ...], bool, bool], str] = {}

    def _statement(
        self,
        dialect: str,
        columns: tuple[str, ...],
        shared: tuple[str, ...] = (),
        any_conflict: bool = False,
        one_lane: bool = False,
    ) -> Insert:
        key = (dialect, columns, shared, any_conflict, one_lane)
        stmt = self._built.get(key)
        if stmt is None:
            stmt = self._built[key] = self._build(dialect, columns, shared, any_conflict, one_lane)
        return stmt

    def _build(
        self,
        dialect: str,
        columns: tuple[str, ...],
        shared: tuple[str, ...],
        any_conflict: bool,
        one_lane: bool,
    ) -> Insert:
        t = self.table.table
        if dialect == "postgresql":
            placed = self._placed_in_one_lane if one_lane else self._placed
            stmt: Any = postgresql.insert(t).from_select(
                [t.c[name] for name in (*columns, *shared, "fair_seq")], placed(columns, shared)
            )
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

    def _rows(self, columns: tuple[str, ...], shared: tuple[str, ...]) -> Any:
        """The rows of the arrays, with their ranks in their lanes and the shared values."""
        t = self.table.table
        # psycopg's dialect renders each typed parameter with its cast: unnest(%(id)s::VARCHAR(64)[])
        arrays = [func.unnest(bindparam(name, type_=ARRAY(t.c[name].type))).label(name) for name in columns]
        rank = func.unnest(bindparam(RANK, type_=ARRAY(Integer))).label(RANK)
        scalars = [bindparam(name, type_=t.c[name].type).label(name) for name in shared]
        return select(*arrays, rank, *scalars).subquery("u")

    def _lane_end(self, lane: Any) -> Any:
        """The largest place of ``lane``'s ready rows: one probe of the lane index. Constants
        are written into the SQL (compiled once, run with the arrays only); the state word is a
        checked identifier of the table (QueueTable.sql_names)."""
        t = self.table.table
        ready = READY_WORDS[self.table.word(Phase.READY)]
        return (
            select(func.max(t.c.fair_seq)).where(t.c[self.table.status] == ready, t.c.fair_key == lane)
        ).scalar_subquery()

    def _place(self, rows: Any, lane_end: Any) -> Any:
        """``GREATEST(due + (k − 1)·S, lane_end + k·S)``, k the row's rank in its lane."""
        one: Any = literal_column("1")
        spacing: Any = SPACING
        due, k = rows.c[self.table.due], rows.c[RANK]
        return func.greatest(due + (k - one) * spacing, func.coalesce(lane_end + k * spacing, due))

    def _placed(self, columns: tuple[str, ...], shared: tuple[str, ...]) -> Any:
        """The rows, each with its place in its lane (``_place``): the lanes' ends probed once
        per lane of the statement (``LANES``, its distinct lanes, in a materialized CTE — not once
        per row)."""
        t = self.table.table
        rows = self._rows(columns, shared)
        lanes = select(func.unnest(bindparam(LANES, type_=ARRAY(t.c.fair_key.type))).label("lane")).subquery(
            "l"
        )
        ends = (
            select(lanes.c.lane, self._lane_end(lanes.c.lane).label("lane_end"))
            .cte("e")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        return select(
            *(rows.c[name] for name in (*columns, *shared)), self._place(rows, ends.c.lane_end)
        ).select_from(rows.join(ends, rows.c.fair_key == ends.c.lane))

    def _placed_in_one_lane(self, columns: tuple[str, ...], shared: tuple[str, ...]) -> Any:
        """The same for a statement whose rows are all of one lane (``LANE``, a scalar: a single
        job, or one agent's batch): the lane's end is one uncorrelated probe, no CTE, no join."""
        t = self.table.table
        rows = self._rows(columns, shared)
        end = self._lane_end(bindparam(LANE, type_=t.c.fair_key.type))
        return select(*(rows.c[name] for name in (*columns, *shared)), self._place(rows, end))

    def _postgresql_sql(
        self,
        engine: Engine,
        columns: tuple[str, ...],
        shared: tuple[str, ...],
        any_conflict: bool,
        one_lane: bool,
    ) -> str:
        """The statement compiled once to the driver's SQL (SQLAlchemy would compile it anew
        each time: its cache does not take this statement)."""
        key = (columns, shared, any_conflict, one_lane)
        sql = self._compiled.get(key)
        if sql is None:
            stmt = self._statement("postgresql", columns, shared, any_conflict, one_lane)
            sql = str(stmt.compile(dialect=engine.dialect))
            for name in (
                *columns,
                RANK,
                LANES,
            ):  # arrays travel in binary: no quoting and escaping per element
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
        for row in rows:
            row["fair_key"] = str(row.get("fair_key") or SHARED_LANE)
        if engine.dialect.name != "postgresql":
            with transaction(engine, conn) as c:
                self._place_on_sqlite(c, rows, common)
                whole = [{**row, **common} for row in rows] if common else list(rows)
                stmt = self._statement("sqlite", tuple(whole[0]), (), any_conflict)
                return {r[0] for r in c.execute(stmt, whole)}
        columns = tuple(rows[0])
        executor = Executor(engine)
        parts = []
        for part in chunks(rows, UNNEST_CHUNK):
            params = {
                **common,
                **{name: [row[name] for row in part] for name in columns},
                **_lane_ranks(part),
            }
            one_lane = len(params[LANES]) == 1
            if one_lane:
                params[LANE] = params.pop(LANES)[0]
            parts.append(
                (self._postgresql_sql(engine, columns, tuple(common), any_conflict, one_lane), params)
            )
        if conn is None and len(parts) == 1:  # one statement: its own transaction, one round trip
            sql, params = parts[0]
            return {r["id"] for r in executor.run(sql, params).rows}
        with transaction(engine, conn) as c:
            return {r["id"] for sql, params in parts for r in executor.run(sql, params, c).rows}

    def _place_on_sqlite(
        self, c: Connection, rows: Sequence[dict[str, Any]], common: Mapping[str, Any]
    ) -> None:
        """SQLite: each row's place in its lane (:func:`memtasks.domain.fairness.places`), from
        where each lane ends now, read in the insert's own transaction (under the write lock)."""
        due = self.table.due
        lanes = [str(row["fair_key"]) for row in rows]
        dues = [int(row[due] if due in row else common[due]) for row in rows]
        t, status = self.table.table, self.table.table.c[self.table.status]
        ready = self.table.word(Phase.READY)
        distinct = sorted(set(lanes))
        ends = [
            select(func.max(t.c.fair_seq)).where(status == ready, t.c.fair_key == lane).scalar_subquery()
            for lane in distinct
        ]
        found = c.execute(select(*ends)).one()
        lane_ends = {
            lane: None if end is None else int(end) for lane, end in zip(distinct, found, strict=True)
        }
        for row, seq in zip(rows, places(lanes, dues, lane_ends), strict=True):
            row["fair_seq"] = seq


def _lane_ranks(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each row's rank in its lane (in order) and the distinct lanes, as two arrays."""
    seen: dict[str, int] = {}
    ranks = []
    for row in rows:
        lane = str(row["fair_key"])
        seen[lane] = seen.get(lane, 0) + 1
        ranks.append(seen[lane])
    return {RANK: ranks, LANES: list(seen)}


__all__ = ["UNNEST_CHUNK", "Inserter"]
