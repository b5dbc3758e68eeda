"""The ``memtasks`` command (Typer + Rich). Errors are one line and a non-zero exit:
2 for usage and configuration, 1 for everything else (see :mod:`memtasks.cli.common`).

Global options are also ``MEMTASKS_*`` variables; every other setting is read from the
environment as the workers read it (see the README's configuration table).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import typer
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from memtasks.cli import archive, budget, db, demo, enqueue, fleet, jobs, operate, status, web
from memtasks.cli.common import EXIT_FAILURE, EXIT_USAGE, State, choice, completer, err
from memtasks.domain.errors import ConfigurationError, MemtasksError
from memtasks.domain.masking import mask_urls_in

app = typer.Typer(
    name="memtasks",
    help="Background maintenance of an AI agent's memory, on Celery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def version() -> str:
    """The installed package's version (its metadata), or ``unknown`` from a bare source tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("memtasks")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"memtasks {version()}")
        raise typer.Exit(0)


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def completion(
    shell: str = typer.Argument(..., help=", ".join(SHELLS), autocompletion=completer(SHELLS)),
) -> None:
    """Print the shell-completion script (e.g. `memtasks completion bash > ~/.memtasks-complete.bash`
    and source it; `--install-completion` installs it for the current shell)."""
    from typer._completion_shared import get_completion_script

    choice(shell, SHELLS, "shell")
    print(get_completion_script(prog_name="memtasks", complete_var="_MEMTASKS_COMPLETE", shell=shell))


@app.callback()
def root(
    ctx: typer.Context,
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
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
app.add_typer(archive.app, name="archive")
app.command("budget")(budget.budget)
app.add_typer(operate.decay_app, name="decay")
app.add_typer(operate.failures_app, name="failures")
app.command("completion")(completion)
app.command("worker", context_settings=fleet.PASS_THROUGH)(fleet.worker)
app.command("beat", context_settings=fleet.PASS_THROUGH)(fleet.beat)
app.command("flower", context_settings=fleet.PASS_THROUGH)(fleet.flower)
app.command("metrics")(fleet.metrics)
app.command("web")(web.web)
app.command("demo")(demo.demo)


def _one_line(exc: BaseException) -> str:
    """The first line of the error, every URL in it masked (a driver's message may quote one)."""
    text = str(exc).strip().splitlines()
    return mask_urls_in(text[0]) if text else type(exc).__name__


def _describe(exc: Exception) -> tuple[str, int]:
    """The one line and the exit status an error ends the command with."""
    if isinstance(exc, SQLAlchemyError):
        return f"database: {_one_line(exc)} — check MEMTASKS_DATABASE_URL", EXIT_FAILURE
    if isinstance(exc, RedisError):
        return f"Redis: {_one_line(exc)} — check MEMTASKS_LOCK_REDIS_URL", EXIT_FAILURE
    return _one_line(exc), EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_FAILURE


def _click_errors() -> Any:
    """The exceptions of the Click that Typer runs on (Typer ≥ 0.2x carries its own copy)."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:  # pragma: no cover - an older Typer, on Click itself
        return importlib.import_module("click.exceptions")


def _usage_line(exc: Any) -> tuple[str, int]:
    """Click's error (an unknown option, a missing argument, a bad value) as one line."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _click_errors().UsageError) and ctx is not None:
        return f"{message} (see `{ctx.command_path} --help`)", EXIT_USAGE
    return message, exc.exit_code


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
    errors = _click_errors()
    try:
        # Not standalone: Click's own errors come here, to be printed as one line.
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name="memtasks", standalone_mode=False
        )
    except errors.NoArgsIsHelpError as exc:  # `memtasks` or `memtasks jobs` alone: the help, exit 2
        print(exc.ctx.get_help())
        sys.exit(EXIT_USAGE)
    except errors.ClickException as exc:
        message, status = _usage_line(exc)
        err.print(f"error: {message}", markup=False)
        sys.exit(status)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(EXIT_FAILURE)
    except (MemtasksError, SQLAlchemyError, RedisError, OSError) as exc:
        message, status = _describe(exc)
        err.print(f"error: {message}", markup=False)
        sys.exit(status)
    finally:
        logging.getLogger().removeHandler(console)
    sys.exit(result if isinstance(result, int) else 0)


__all__ = ["app", "main"]
