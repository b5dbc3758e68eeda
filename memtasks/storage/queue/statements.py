"""The engine's named statements for one table and one dialect, rendered once.

Each statement declares the moves of the lifecycle it makes (``memtasks.domain.lifecycle``);
rendering refuses a statement whose moves the lifecycle does not allow, so the SQL that runs
and the domain's state machine cannot drift apart. ``tests/storage/test_lifecycle_walk.py``
runs every statement against rows in every phase and checks what really changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from types import ModuleType

from memtasks.domain.lifecycle import Phase, check_moves
from memtasks.storage.queue import sql_postgresql, sql_sqlite
from memtasks.storage.queue.table import QueueTable

R, U, D, F, C = Phase.READY, Phase.RUNNING, Phase.DONE, Phase.FAILED, Phase.CANCELLED

MOVES: dict[str, frozenset[tuple[Phase, Phase]]] = {
    "CLAIM_BY_ID": frozenset({(R, U)}),
    "CLAIM_BATCH": frozenset({(R, U)}),
    "CLAIM_NEXT": frozenset({(R, U)}),
    "HEARTBEAT": frozenset(),
    "SETTLE_DONE": frozenset({(U, D)}),
    "SETTLE_DONE_MANY": frozenset({(U, D)}),
    "SETTLE_RETRY": frozenset({(U, R)}),
    "SETTLE_FAILED": frozenset({(U, F)}),
    "SETTLE_DEFERRED": frozenset({(U, R), (U, F)}),
    "RELEASE_MANY": frozenset({(U, R)}),
    "RECOVER_EXPIRED": frozenset({(U, R), (U, F)}),
    "MARK_FOR_DISPATCH": frozenset(),
    "FORGET_DISPATCH": frozenset(),
    "POSTPONE": frozenset(),
}
"""Statement name → the moves it may make (none: it changes no row's phase)."""

MANY_ROWS: frozenset[str] = frozenset(
    {
        "CLAIM_BATCH",
        "SETTLE_DONE_MANY",
        "RELEASE_MANY",
        "RECOVER_EXPIRED",
        "MARK_FOR_DISPATCH",
        "FORGET_DISPATCH",
    }
)
"""Statements over a set of rows whose size only the call knows (a limit, an array): planned
for each call, never prepared. A prepared statement switches to a generic plan after five
runs, and the generic plan of a 500-row settle loops over the lease index once per row:
7 ms became 50–77 ms."""

DIALECTS: dict[str, ModuleType] = {"postgresql": sql_postgresql, "sqlite": sql_sqlite}


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    sql: str
    moves: frozenset[tuple[Phase, Phase]]
    prepared: bool = True
    """The driver may prepare it (one row, one plan); False for :data:`MANY_ROWS`."""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every hot-path statement of one table in one dialect."""

    claim_by_id: Statement
    claim_batch: Statement
    claim_next: Statement
    heartbeat: Statement
    settle_done: Statement
    settle_done_many: Statement
    settle_retry: Statement
    settle_failed: Statement
    settle_deferred: Statement
    release_many: Statement
    recover_expired: Statement
    mark_for_dispatch: Statement
    forget_dispatch: Statement
    postpone: Statement

    def all(self) -> list[Statement]:
        return [getattr(self, name.lower()) for name in MOVES]


def render(template: str, table: QueueTable) -> str:
    """A template with ``table``'s column names, state words and conditions filled in
    (each name checked by :meth:`QueueTable.sql_names`; values are never rendered: they bind)."""
    names = table.sql_names()
    return template.format_map(names)


@cache
def statements(table: QueueTable, dialect: str) -> Statements:
    """The rendered statements of ``table`` for ``dialect`` (built once per process)."""
    module = DIALECTS.get(dialect)
    if module is None:
        raise ValueError(f"the queue engine has no SQL for {dialect!r}")
    built: dict[str, Statement] = {}
    for name, moves in MOVES.items():
        check_moves(f"{table.name} {name.lower()}", moves)
        sql = render(getattr(module, name), table)
        built[name.lower()] = Statement(name.lower(), sql, moves, prepared=name not in MANY_ROWS)
    return Statements(**built)


def database_now_sql(dialect: str) -> str:
    return str(DIALECTS[dialect].DATABASE_NOW)


__all__ = ["MANY_ROWS", "MOVES", "Statement", "Statements", "database_now_sql", "render", "statements"]
