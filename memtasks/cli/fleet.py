"""``memtasks worker|beat|flower|metrics``: conveniences over the plain commands.

The documented way stays ``celery -A memtasks.worker.app worker|beat|flower``; these run
exactly that, with memtasks' queues as the default. ``memtasks flower`` first refuses to
listen beyond loopback without authentication (the deploy files start Flower through it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer

from memtasks.cli.common import err, fail, out, state
from memtasks.config import check_listen_address, check_queue_list, field_bounds
from memtasks.domain.urls import is_loopback
from memtasks.worker.names import QUEUES

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _exec(argv: list[str]) -> None:
    out.print(" ".join(["celery", *argv[3:]]), markup=False, style="dim")
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 - becomes the celery process, arguments as a list


def from_settings(field: str, *, required: bool = False) -> Callable[..., Any]:
    """An option's callback: the value given on the command line (within the setting's bounds),
    else the setting ``field`` (``MEMTASKS_<FIELD>``, read and checked with every other setting:
    a bad one is one line); ``required``: neither is a usage error."""

    bounds = field_bounds(field)

    def resolve(ctx: typer.Context, value: Any) -> Any:
        if ctx.resilient_parsing:
            return value
        if value is not None:
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise typer.BadParameter(f"{value} is not in the valid range {bounds[0]} to {bounds[1]}")
            return value
        found = getattr(state(ctx).settings, field)
        if found is None and required:
            raise typer.BadParameter(f"required: give it, or set MEMTASKS_{field.upper()}")
        return found

    return resolve


def checked_by(check: Callable[[str], str], field: str) -> Callable[..., Any]:
    """:func:`from_settings`, and a value given on the command line checked as the setting is
    (a bad one is a usage error)."""
    default = from_settings(field)

    def resolve(ctx: typer.Context, value: str | None) -> Any:
        if value is None:
            return default(ctx, value)
        try:
            return check(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return resolve


def worker_argv(queues: str, concurrency: int | None, extra: Sequence[str] = ()) -> list[str]:
    """The ``celery worker`` command ``memtasks worker`` becomes."""
    argv = [*CELERY, "worker", "-Q", queues, "--without-mingle", "--without-gossip"]
    if concurrency is not None:
        argv += ["-c", str(concurrency)]
    return argv + list(extra)


def worker(
    ctx: typer.Context,
    queues: str = typer.Option(
        None,
        "--queues",
        "-Q",
        callback=checked_by(check_queue_list, "worker_queues"),
        help=f"comma-separated, each one of {', '.join(QUEUES)}"
        " (default: MEMTASKS_WORKER_QUEUES, else every queue)",
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        callback=from_settings("worker_concurrency"),
        help="pool processes (default: MEMTASKS_WORKER_CONCURRENCY, else Celery's: the CPU count)",
    ),
) -> None:
    """celery worker on memtasks' queues (extra arguments go to celery)."""
    state(ctx).settings  # fail early, in one line, on bad settings  # noqa: B018
    _exec(worker_argv(queues, concurrency, ctx.args))


def beat(ctx: typer.Context) -> None:
    """celery beat with memtasks' schedule (extra arguments go to celery)."""
    state(ctx).settings  # noqa: B018
    _exec([*CELERY, "beat", *ctx.args])


def flower_argv(args: Sequence[str], env: Mapping[str, str], port: int) -> list[str]:
    """The ``celery flower`` command ``memtasks flower`` becomes: ``args``, and ``--port=PORT``
    (``MEMTASKS_FLOWER_PORT``) unless they or ``FLOWER_PORT`` name a port."""
    argv = [*CELERY, "flower", *args]
    if flower_option(args, env, "port") is None:
        argv.append(f"--port={port}")
    return argv


def flower(
    ctx: typer.Context,
    allow_unauthenticated: bool = typer.Option(
        None,
        "--allow-unauthenticated",
        callback=from_settings("flower_allow_unauthenticated"),
        help="start even when Flower would listen beyond loopback without auth "
        "(auth set in a Flower config file, or a network you trust; "
        "default: MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED, else false)",
    ),
) -> None:
    """Flower on the memtasks app, on MEMTASKS_FLOWER_PORT (extra arguments go to flower, e.g.
    --port=5555).

    Refuses to listen beyond loopback without authentication: FLOWER_BASIC_AUTH=user:password
    (or --basic-auth), or OAuth (--auth with --auth_provider).
    """
    problem = flower_auth_problem(ctx.args, os.environ)
    if problem is not None and not problem.startswith(UNAUTHENTICATED):  # malformed auth: no opt-out
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(2)
    if problem is not None and not allow_unauthenticated:
        err.print(f"error: {problem} — {FLOWER_AUTH_HINT}", markup=False)
        raise typer.Exit(2)
    _exec(flower_argv(ctx.args, os.environ, state(ctx).settings.flower_port))


UNAUTHENTICATED = "Flower would listen on"
FLOWER_AUTH_HINT = (
    "set FLOWER_BASIC_AUTH=user:password (or --basic-auth=user:password, or OAuth with --auth and "
    "--auth_provider), listen on loopback with --address=127.0.0.1, or pass --allow-unauthenticated"
)


def flower_option(args: Sequence[str], env: Mapping[str, str], name: str) -> str | None:
    """The value Flower gives its option ``name`` (``basic_auth``, ``address``, …): the last
    ``--name=value`` on the command line (any dashes, ``-`` or ``_`` alike), else ``FLOWER_NAME``."""
    value = env.get(f"FLOWER_{name.upper()}")
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        key, equals, given = arg.lstrip("-").partition("=")
        if key.replace("-", "_") != name:
            continue
        if equals:
            value = given
        elif i + 1 < len(args):  # Flower itself refuses this form; read it the strict way
            value = args[i + 1]
    return value


def flower_auth_problem(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Why Flower must not start with ``args`` and ``env``, or None.

    Basic auth must be ``user:password`` pairs with neither part empty. Without basic auth or
    OAuth, Flower may listen only on a loopback address or a unix socket; its default address
    (``''``) is every interface.
    """
    basic = flower_option(args, env, "basic_auth")
    if basic is not None and basic.strip():
        for entry in basic.split(","):
            user, colon, password = entry.partition(":")
            if not (colon and user.strip() and password.strip()):
                return "FLOWER_BASIC_AUTH must be user:password (comma-separated pairs), neither part empty"
        return None
    if (flower_option(args, env, "auth") or "").strip() and (
        flower_option(args, env, "auth_provider") or ""
    ).strip():
        return None
    if (flower_option(args, env, "unix_socket") or "").strip():
        return None
    address = flower_option(args, env, "address") or ""
    if is_loopback(address):
        return None
    return f"{UNAUTHENTICATED} {address or 'every interface'} without authentication"


def metrics(
    ctx: typer.Context,
    port: int = typer.Option(
        None,
        "--port",
        callback=from_settings("metrics_port"),
        help="default: MEMTASKS_METRICS_PORT, else 9808",
    ),
    address: str = typer.Option(
        None,
        "--address",
        callback=checked_by(check_listen_address, "metrics_address"),
        help="default: MEMTASKS_METRICS_ADDRESS, else 127.0.0.1",
    ),
) -> None:
    """Serve /metrics (Prometheus), /jobs/ID (one job as JSON) and /healthz at http://ADDRESS:PORT.

    The tables are read at most once per MEMTASKS_METRICS_INTERVAL_S, whatever the scrape rate.
    """
    from memtasks.metrics.server import exporter_app, serve

    s = state(ctx)
    app, _ = exporter_app(
        s.reader.engine,
        clock=s.reader.jobs.clock,
        interval_s=s.settings.metrics_interval_s,
        tree_uses_llm=s.settings.tree_uses_llm,
    )
    try:
        server, thread = serve(app, address, port)
    except OSError as exc:
        fail(
            f"cannot listen on {address}:{port}: {exc.strerror or exc}", "choose another --port or --address"
        )
    base = f"http://{address}:{port}"
    out.print(f"serving memtasks metrics on {base}/metrics, {base}/jobs/ID and {base}/healthz", markup=False)
    try:
        while thread.is_alive():
            time.sleep(1)
    except KeyboardInterrupt:
        server.shutdown()
