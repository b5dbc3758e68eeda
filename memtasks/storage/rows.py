"""Small helpers shared by the repositories."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, Table, Update, update
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

IN_CHUNK = 500


def new_token() -> str:
    """A random lease token."""
    return secrets.token_hex(16)


@contextmanager
def transaction(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """Use the caller's connection (its transaction, its commit) or a new transaction."""
    if conn is not None:
        yield conn
        return
    with engine.begin() as own:
        yield own


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for a single self-contained statement (a claim, a heartbeat, a settle).

    On PostgreSQL it runs in autocommit: the statement is its own transaction, one round
    trip instead of three (BEGIN, the statement, COMMIT). On SQLite it is an ordinary
    transaction, which begins IMMEDIATE like every SQLite write here.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        return
    with engine.begin() as own:
        yield own


READ_ONLY = "memtasks_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only. On SQLite its transactions begin deferred (a WAL
    snapshot that never waits for the write lock); writers begin IMMEDIATE."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


def dialect_insert(c: Connection, table: Table) -> Any:
    """An ``INSERT`` of the connection's dialect, so ``ON CONFLICT … DO NOTHING`` can follow."""
    if c.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def update_picked(table: Table, picked: Select[Any], dialect: str) -> Update:
    """``UPDATE table … WHERE id`` is one of the rows that ``picked`` selects.

    PostgreSQL gets a MATERIALIZED CTE, evaluated exactly once: a plain
    ``id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`` may be re-run by the planner
    for each outer row and then claims more rows than it returns. SQLite evaluates an
    uncorrelated ``IN (SELECT …)`` once, under its write lock.
    """
    if dialect == "postgresql":
        cte = picked.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        return update(table).where(table.c.id == cte.c.id)
    return update(table).where(table.c.id.in_(picked.scalar_subquery()))
