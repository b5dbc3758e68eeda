"""Small helpers shared by the repositories."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine

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


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
