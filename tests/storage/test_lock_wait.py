"""A lock wait that gave up is told apart from every other database error, on both drivers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from memtasks.storage.lock_wait import is_lock_timeout
from tests.conftest import POSTGRES_URL, require_postgres


@pytest.mark.unit
def test_other_errors_are_not_lock_waits() -> None:
    assert not is_lock_timeout(ValueError("database is locked"))
    assert not is_lock_timeout(RuntimeError("boom"))


@pytest.mark.integration
def test_sqlite_busy_timeout_is_a_lock_wait(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert is_lock_timeout(raised.value)
    finally:
        engine.dispose()
        holder.close()


@pytest.mark.postgres
@pytest.mark.integration
def test_postgresql_lock_timeout_is_a_lock_wait() -> None:
    require_postgres()
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as holder, engine.connect() as waiter:
            holder.begin()
            holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            waiter.begin()
            waiter.execute(text("SET LOCAL lock_timeout = '50ms'"))
            with pytest.raises(OperationalError) as raised:
                waiter.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            assert is_lock_timeout(raised.value)
            waiter.rollback()
            with pytest.raises(DBAPIError) as other:
                waiter.execute(text("SELECT 1/0 FROM no_such_table"))
            assert not is_lock_timeout(other.value)
            holder.rollback()
    finally:
        engine.dispose()
