"""The ``memtasks`` command (Typer + Rich). Errors are one line and a non-zero exit.

Global options are also ``MEMTASKS_*`` variables; every other setting is read from the
environment as the workers read it (see the README's configuration table).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from memtasks.cli import db, demo, enqueue, fleet, jobs, operate, status
from memtasks.cli.common import State, err
from memtasks.domain.errors import ConfigurationError, MemtasksError
from memtasks.domain.masking import mask_urls_in

app = typer.Typer(
    name="memtasks",
    help="Background maintenance of an AI agent's memory, on Celery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    database_url: str | None = typer.Option(None, "--database-url", envvar="MEMTASKS_DATABASE_URL"),
    broker_url: str | None = typer.Option(None, "--broker-url", envvar="MEMTASKS_BROKER_URL"),
    lock_redis_url: str | None = typer.Option(None, "--lock-redis-url", envvar="MEMTASKS_LOCK_REDIS_URL"),
) -> None:
    ctx.obj = State(
        {"database_url": database_url, "broker_url": broker_url, "lock_redis_url": lock_redis_url}
    )


app.add_typer(db.app, name="db")
app.command("status")(status.status)
app.add_typer(jobs.app, name="jobs")
app.command("requeue")(jobs.requeue)
app.add_typer(enqueue.app, name="enqueue")
app.command("consolidate")(operate.consolidate)
app.add_typer(operate.decay_app, name="decay")
app.add_typer(operate.failures_app, name="failures")
app.command("worker", context_settings=fleet.PASS_THROUGH)(fleet.worker)
app.command("beat", context_settings=fleet.PASS_THROUGH)(fleet.beat)
app.command("flower", context_settings=fleet.PASS_THROUGH)(fleet.flower)
app.command("metrics")(fleet.metrics)
app.command("demo")(demo.demo)


def _one_line(exc: BaseException) -> str:
    """The first line of the error, every URL in it masked (a driver's message may quote one)."""
    text = str(exc).strip().splitlines()
    return mask_urls_in(text[0]) if text else type(exc).__name__


def _describe(exc: Exception) -> tuple[str, int]:
    """The one line and the exit status an error ends the command with."""
    if isinstance(exc, SQLAlchemyError):
        return f"database: {_one_line(exc)} — check MEMTASKS_DATABASE_URL", 1
    if isinstance(exc, RedisError):
        return f"Redis: {_one_line(exc)} — check MEMTASKS_LOCK_REDIS_URL", 1
    return _one_line(exc), 2 if isinstance(exc, ConfigurationError) else 1


class ConsoleLog(logging.Handler):
    """memtasks' log records on the command's stderr while it runs: a warning (a publish left
    to the dispatcher, say) as one ``warning: …`` line, URLs masked; errors are not repeated —
    the command ends with its own one-line ``error: …``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            return
        try:
            lines = record.getMessage().strip().splitlines()
        except Exception:  # a record whose arguments do not fit its format
            lines = [str(record.msg)]
        err.print(f"warning: {mask_urls_in(lines[0]) if lines else record.name}", markup=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``memtasks`` console script."""
    command = typer.main.get_command(app)
    console = ConsoleLog()
    logging.getLogger().addHandler(console)
    try:
        # Click handles its own errors (usage → exit 2) and exits; ours are caught below.
        command.main(args=list(argv) if argv is not None else None, prog_name="memtasks")
    except (MemtasksError, SQLAlchemyError, RedisError, OSError) as exc:
        message, status = _describe(exc)
        err.print(f"error: {message}", markup=False)
        sys.exit(status)
    finally:
        logging.getLogger().removeHandler(console)
    sys.exit(0)


__all__ = ["app", "main"]
