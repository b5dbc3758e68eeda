"""``memtasks worker|beat|flower|metrics``: conveniences over the plain commands.

The documented way stays ``celery -A memtasks.worker.app worker|beat|flower``; these run
exactly that, with memtasks' queues as the default. ``memtasks flower`` first refuses to
listen beyond loopback without authentication (the deploy files start Flower through it).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from collections.abc import Mapping, Sequence

import typer

from memtasks.cli.common import err, fail, out, state
from memtasks.worker.names import QUEUES

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _exec(argv: list[str]) -> None:
    out.print(" ".join(["celery", *argv[3:]]), markup=False, style="dim")
    sys.stdout.flush()
    os.execv(argv[0], argv)  # noqa: S606 - becomes the celery process, arguments as a list


def worker(
    ctx: typer.Context,
    queues: str = typer.Option(",".join(QUEUES), "--queues", "-Q", envvar="MEMTASKS_WORKER_QUEUES"),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", envvar="MEMTASKS_WORKER_CONCURRENCY"),
) -> None:
    """celery worker on memtasks' queues (extra arguments go to celery)."""
    state(ctx).settings  # fail early, in one line, on bad settings  # noqa: B018
    argv = [*CELERY, "worker", "-Q", queues, "--without-mingle", "--without-gossip"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    _exec(argv + list(ctx.args))


def beat(ctx: typer.Context) -> None:
    """celery beat with memtasks' schedule (extra arguments go to celery)."""
    state(ctx).settings  # noqa: B018
    _exec([*CELERY, "beat", *ctx.args])


def flower(
    ctx: typer.Context,
    allow_unauthenticated: bool = typer.Option(
        False,
        "--allow-unauthenticated",
        envvar="MEMTASKS_FLOWER_ALLOW_UNAUTHENTICATED",
        help="start even when Flower would listen beyond loopback without auth "
        "(auth set in a Flower config file, or a network you trust)",
    ),
) -> None:
    """Flower on the memtasks app (extra arguments go to flower, e.g. --port=5555).

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
    state(ctx).settings  # noqa: B018
    _exec([*CELERY, "flower", *ctx.args])


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


def is_loopback(address: str) -> bool:
    """Whether ``address`` (Flower's ``--address``) is reachable from this host only."""
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '' (every interface), 0.0.0.0, a host name: not loopback


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
    port: int = typer.Option(9808, "--port", envvar="MEMTASKS_METRICS_PORT"),
    address: str = typer.Option("127.0.0.1", "--address", envvar="MEMTASKS_METRICS_ADDRESS"),
) -> None:
    """Serve /metrics (Prometheus), /jobs/ID (one job as JSON) and /healthz at http://ADDRESS:PORT.

    The tables are read at most once per MEMTASKS_METRICS_INTERVAL_S, whatever the scrape rate.
    """
    from memtasks.metrics.server import exporter_app, serve

    s = state(ctx)
    app, _ = exporter_app(
        s.runtime.engine,
        clock=s.runtime.jobs.clock,
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
