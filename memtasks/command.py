"""The ``memtasks`` console script: the command needs the ``worker`` extra.

A base install (``pip install memtasks``: the broker-only client) has the script too; without
the extra it says what to install, in one line, instead of a traceback.
"""

from __future__ import annotations

import sys

WORKER_MODULES = (
    "sqlalchemy",
    "alembic",
    "pydantic",
    "pydantic_settings",
    "typer",
    "rich",
    "cryptography",
    "prometheus_client",
)
HINT = "error: the memtasks command needs the worker extra: pip install 'memtasks[worker]'"


def main() -> None:
    try:
        from memtasks import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in WORKER_MODULES:
            raise
        print(HINT, file=sys.stderr)
        raise SystemExit(2) from None
    cli.main()


__all__ = ["main"]
