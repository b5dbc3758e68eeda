"""Run one named statement: inside the caller's transaction, or on its own.

On its own, a statement takes a pooled connection and runs as a single autocommitted
statement — one round trip on PostgreSQL (no BEGIN, no COMMIT), the driver's prepared
statement after a few uses — with no SQLAlchemy statement building in between. Errors come
out as SQLAlchemy's ``DBAPIError`` family, as everywhere else in memtasks, and a connection
the database dropped is invalidated so the pool never hands it out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True, slots=True)
class Result:
    rows: list[dict[str, Any]]
    rowcount: int


class Executor:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._autocommit_switch = engine.dialect.name == "postgresql"
        self._known: dict[str, list[str]] = {}

    def run(
        self, sql: str, params: Mapping[str, Any], conn: Connection | None = None, *, prepare: bool = True
    ) -> Result:
        """Run ``sql``; ``prepare`` False: planned for this call, never prepared (a statement
        over a set of rows whose size changes from call to call)."""
        if conn is not None:
            if not prepare and self._autocommit_switch:
                return self._unprepared_in(conn, sql, params)
            result = conn.exec_driver_sql(sql, dict(params))
            if not result.returns_rows:
                return Result([], result.rowcount)
            keys = list(result.keys())
            rows = [dict(zip(keys, row, strict=True)) for row in result.fetchall()]
            return Result(rows, len(rows))
        return self._alone(sql, params, prepare)

    def _unprepared_in(self, conn: Connection, sql: str, params: Mapping[str, Any]) -> Result:
        driver: Any = conn.connection.driver_connection
        threshold = driver.prepare_threshold
        driver.prepare_threshold = None  # psycopg: never prepare, for this statement only
        try:
            return self.run(sql, params, conn)
        finally:
            driver.prepare_threshold = threshold

    def _keys(self, sql: str, cursor: Any) -> list[str] | None:
        """The result's column names; on PostgreSQL kept per statement while its result has
        as many columns (reading ``description`` builds an object per column, each call)."""
        result = getattr(cursor, "pgresult", None)
        if result is None:
            description = cursor.description
            return None if description is None else [d[0] for d in description]
        if not result.nfields:
            return None
        keys = self._known.get(sql)
        if keys is None or len(keys) != result.nfields:
            keys = self._known[sql] = [d[0] for d in cursor.description]
        return keys

    def _alone(self, sql: str, params: Mapping[str, Any], prepare: bool = True) -> Result:
        raw = self.engine.raw_connection()
        driver: Any = raw.driver_connection
        healthy = True
        try:
            if self._autocommit_switch:
                driver.autocommit = True
            cursor: Any = raw.cursor()
            try:
                if self._autocommit_switch:
                    cursor.execute(sql, params, prepare=None if prepare else False)
                else:
                    cursor.execute(sql, params)
                keys = self._keys(sql, cursor)
                if keys is None:
                    return Result([], cursor.rowcount)
                rows = [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]
                return Result(rows, len(rows))
            except self.dialect.loaded_dbapi.Error as exc:
                healthy = not self.dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
                if not healthy:
                    raw.invalidate(exc)
                raise DBAPIError.instance(
                    sql,
                    params,
                    exc,
                    self.dialect.loaded_dbapi.Error,
                    connection_invalidated=not healthy,
                    dialect=self.dialect,
                ) from exc
            finally:
                cursor.close()
        finally:
            if healthy and self._autocommit_switch:
                try:
                    driver.autocommit = False
                except self.dialect.loaded_dbapi.Error as exc:
                    raw.invalidate(exc)
            raw.close()


__all__ = ["Executor", "Result"]
