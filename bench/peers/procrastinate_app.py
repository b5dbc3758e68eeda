"""The procrastinate app shared by the benchmark driver and its worker processes.

Kept out of ``procrastinate_bench.py`` (procrastinate advises against defining
the app in ``__main__``). Workers load it with the library's own CLI:
``python -m procrastinate --app=procrastinate_app.app worker``; they read the
DSN from BENCH_PEERS_DSN.
"""

from __future__ import annotations

import os

import procrastinate
import psycopg

SCHEMA = "procrastinate_bench"
TASK_NAME = "bench_noop"
WRITE_TASK_NAME = "bench_write"
SEARCH_PATH = f"-c search_path={SCHEMA}"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/bench_peers"


async def noop() -> None:
    """The benchmarked task: does nothing."""


_effects: list[psycopg.AsyncConnection] = []


async def write(context: procrastinate.JobContext) -> None:
    """The durable-effect task: one row into bench_effects, in its own (autocommit) transaction —
    procrastinate runs a task outside the transaction that settles its job."""
    if not _effects:
        dsn = os.environ.get("BENCH_PEERS_DSN", DEFAULT_DSN)
        _effects.append(await psycopg.AsyncConnection.connect(dsn, autocommit=True))
    job_id = context.job.id if context.job is not None else None
    await _effects[0].execute("INSERT INTO public.bench_effects (job_id) VALUES (%s)", (str(job_id),))


def make_app(dsn: str, application_name: str) -> procrastinate.App:
    """An App with the no-op task; every connection uses the dedicated schema."""
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        kwargs={"options": SEARCH_PATH, "application_name": application_name},
    )
    app = procrastinate.App(connector=connector)
    app.task(name=TASK_NAME)(noop)
    app.task(name=WRITE_TASK_NAME, pass_context=True)(write)
    return app


app = make_app(os.environ.get("BENCH_PEERS_DSN", DEFAULT_DSN), "bench_peers_procrastinate_worker")
