"""Benchmark procrastinate (psycopg 3) on this machine; prints one JSON object.

Run with the peers venv:  bench/.venv-peers/bin/python bench/peers/procrastinate_bench.py

Workers are separate OS processes running the library's own CLI on
``procrastinate_app.app`` (see procrastinate_app.py).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys

import common
import psycopg
from procrastinate_app import SCHEMA, SEARCH_PATH, TASK_NAME, WRITE_TASK_NAME, make_app
from psycopg import sql
from psycopg.abc import Query

WORKER_CONCURRENCY = 1  # procrastinate's own default
WORKER_LOG_LEVEL = "warning"  # the CLI default (info) logs two lines per job


class ProcrastinateAdapter:
    name = "procrastinate"
    version = importlib.metadata.version("procrastinate")
    notes = (
        f"procrastinate {version} + psycopg {importlib.metadata.version('psycopg')}; "
        f"workers: `python -m procrastinate --log-level={WORKER_LOG_LEVEL} worker "
        f"--concurrency={WORKER_CONCURRENCY}`, one OS process each (library defaults "
        "otherwise: concurrency 1, LISTEN/NOTIFY on, 5s fallback poll, finished jobs kept); "
        "async no-op task; single enqueue = Task.defer_async per job; batched = "
        "Task.batch_defer_async (one INSERT per batch); schema applied fresh in postgres "
        f"schema '{SCHEMA}' each run; done = status 'succeeded' in procrastinate_jobs."
    )

    def __init__(self, dsn: str, handler: str = "noop") -> None:
        self.dsn = dsn
        self.handler = handler
        self.app = make_app(dsn, "bench_peers_procrastinate_main")
        self.task = self.app.tasks[WRITE_TASK_NAME if handler == "write" else TASK_NAME]
        self.conn: psycopg.AsyncConnection | None = None

    async def open(self) -> None:
        self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, options=SEARCH_PATH)
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()
        if self.conn is not None:
            await self.conn.close()

    async def _fetch_row(self, query: Query) -> tuple[int, ...]:
        assert self.conn is not None
        cur = await self.conn.execute(query)
        return tuple(await cur.fetchone() or ()) if cur.description else ()

    async def reset(self) -> None:
        schema = sql.Identifier(SCHEMA)
        await self._fetch_row(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        await self._fetch_row(sql.SQL("CREATE SCHEMA {}").format(schema))
        await self.app.schema_manager.apply_schema_async()
        await self._fetch_row(common.EFFECTS_DDL)
        common.log(f"procrastinate schema applied in '{SCHEMA}'")

    async def clear(self) -> None:
        await self._fetch_row(
            "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs"
        )
        await self._fetch_row("TRUNCATE public.bench_effects")

    async def enqueue_one(self) -> None:
        await self.task.defer_async()

    async def enqueue_many(self, count: int) -> None:
        await self.task.batch_defer_async(*({} for _ in range(count)))

    async def progress(self) -> common.Progress:
        pending, succeeded, failed = await self._fetch_row(
            """SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')),
                      count(*) FILTER (WHERE status = 'succeeded'),
                      count(*) FILTER (WHERE status NOT IN ('todo', 'doing', 'succeeded'))
               FROM procrastinate_jobs"""
        )
        if self.handler == "write":  # done: its row is written as well
            (written,) = await self._fetch_row("SELECT count(*) FROM public.bench_effects")
            succeeded = min(succeeded, written)
        return common.Progress(pending=pending, succeeded=succeeded, failed=failed)

    async def analyze(self) -> None:
        await self._fetch_row("ANALYZE procrastinate_jobs, procrastinate_events, procrastinate_workers")

    async def workers_ready(self, workers: int) -> bool:
        (registered,) = await self._fetch_row("SELECT count(*) FROM procrastinate_workers")
        return registered >= workers

    def worker_commands(self, workers: int) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "procrastinate",
                f"--log-level={WORKER_LOG_LEVEL}",
                "--app=procrastinate_app.app",
                "worker",
                f"--concurrency={WORKER_CONCURRENCY}",
                f"--name=bench-worker-{index}",
            ]
            for index in range(workers)
        ]

    def worker_env(self) -> dict[str, str]:
        return common.worker_env({"BENCH_PEERS_DSN": self.dsn})


async def main() -> None:
    args = common.parse_args("Benchmark procrastinate enqueue / drain / end-to-end throughput.")
    common.ensure_database(args.dsn)
    adapter = ProcrastinateAdapter(args.dsn, args.handler)
    await adapter.open()
    try:
        figures = await common.run_benchmark(adapter, args)
    finally:
        await adapter.close()
    common.result(adapter.name, **figures)


if __name__ == "__main__":
    common.exit_on_sigterm()
    asyncio.run(main())
