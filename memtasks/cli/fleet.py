"""``memtasks worker|beat|flower|metrics``: conveniences over the plain commands.

The documented way stays ``celery -A memtasks.worker.app worker|beat|flower``; these run
exactly that, with memtasks' queues as the default.
"""

from __future__ import annotations

import os
import sys
import time

import typer

from memtasks.cli.common import out, state
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


def flower(ctx: typer.Context) -> None:
    """Flower on the memtasks app (extra arguments go to flower, e.g. --port=5555)."""
    state(ctx).settings  # noqa: B018
    _exec([*CELERY, "flower", *ctx.args])


def metrics(
    ctx: typer.Context,
    port: int = typer.Option(9808, "--port", envvar="MEMTASKS_METRICS_PORT"),
    address: str = typer.Option("127.0.0.1", "--address", envvar="MEMTASKS_METRICS_ADDRESS"),
) -> None:
    """Serve the SQL queue gauges for Prometheus at http://ADDRESS:PORT/metrics."""
    from prometheus_client import CollectorRegistry, start_http_server

    from memtasks.metrics import QueueCollector

    s = state(ctx)
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(s.runtime.engine, clock=s.runtime.jobs.clock, tree_uses_llm=s.settings.tree_uses_llm)
    )
    server, thread = start_http_server(port, addr=address, registry=registry)
    out.print(f"serving memtasks metrics on http://{address}:{port}/metrics", markup=False)
    try:
        while thread.is_alive():
            time.sleep(1)
    except KeyboardInterrupt:
        server.shutdown()
