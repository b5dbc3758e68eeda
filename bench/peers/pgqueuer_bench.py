"""Benchmark pgqueuer (asyncpg) on this machine; prints one JSON object.

Run with the peers venv:  bench/.venv-peers/bin/python bench/peers/pgqueuer_bench.py

Workers are separate OS processes running the library's own CLI (``pgq run``)
on ``pgqueuer_app:create_pgqueuer`` (see pgqueuer_app.py).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys

import asyncpg
import common
from pgqueuer import Queries
from pgqueuer_app import ENTRYPOINT, SCHEMA, WORKER_APP_NAME, WRITE_ENTRYPOINT

WORKER_BATCH_SIZE = 10  # `pgq run` default: jobs dequeued per round trip (``--worker-batch``)
WORKER_LOG_LEVEL = "WARNING"  # `pgq run` default is INFO


class PgqueuerAdapter:
    name = "pgqueuer"
    version = importlib.metadata.version("pgqueuer")
    notes = (
        f"pgqueuer {version} + asyncpg {importlib.metadata.version('asyncpg')}; "
        f"workers: `python -m pgqueuer --schema {SCHEMA} run pgqueuer_app:create_pgqueuer "
        f"--batch-size {WORKER_BATCH_SIZE} --log-level {WORKER_LOG_LEVEL}`, one OS process "
        "each with one asyncpg connection (library defaults otherwise: async entrypoint with no "
        "concurrency limit, i.e. up to batch-size jobs in flight per process, LISTEN/NOTIFY, "
        "durable tables, completions flushed in buffered batches); async no-op entrypoint; "
        "single enqueue = Queries.enqueue(str, None) per job; batched = Queries.enqueue(lists) "
        f"(one statement per batch); schema dropped and reinstalled (Queries.install) in "
        f"postgres schema '{SCHEMA}' each run; done = queue table empty and N 'successful' "
        "rows in pgqueuer_log."
    )

    def __init__(self, dsn: str, handler: str = "noop", worker_batch: int = WORKER_BATCH_SIZE) -> None:
        self.dsn = dsn
        self.entrypoint = WRITE_ENTRYPOINT if handler == "write" else ENTRYPOINT
        self.handler = handler
        self.worker_batch = worker_batch
        self.notes = self.notes.replace(f"--batch-size {WORKER_BATCH_SIZE}", f"--batch-size {worker_batch}")
        self.conn: asyncpg.Connection | None = None
        self.queries: Queries | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(
            self.dsn, server_settings={"application_name": "bench_peers_pgqueuer_main"}
        )
        self.queries = Queries.from_asyncpg_connection(self.conn)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    @property
    def _q(self) -> Queries:
        assert self.queries is not None, "open() first"
        return self.queries

    @property
    def _c(self) -> asyncpg.Connection:
        assert self.conn is not None, "open() first"
        return self.conn

    async def reset(self) -> None:
        await self._c.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        await self._q.install()
        await self._c.execute(common.EFFECTS_DDL)
        common.log(f"pgqueuer schema installed in '{SCHEMA}'")

    async def clear(self) -> None:
        await self._q.clear_queue()
        await self._q.clear_queue_log()
        await self._q.clear_statistics_log()
        await self._c.execute("TRUNCATE public.bench_effects")

    async def enqueue_one(self) -> None:
        await self._q.enqueue(self.entrypoint, None)

    async def enqueue_many(self, count: int) -> None:
        await self._q.enqueue([self.entrypoint] * count, [None] * count, [0] * count)

    async def progress(self) -> common.Progress:
        row = await self._c.fetchrow(  # SCHEMA is a module constant, not input
            f"""SELECT (SELECT count(*) FROM {SCHEMA}.pgqueuer) AS pending,
                       count(*) FILTER (WHERE status = 'successful') AS succeeded,
                       count(*) FILTER (WHERE status NOT IN ('queued', 'picked', 'successful'))
                           AS failed
                FROM {SCHEMA}.pgqueuer_log"""
        )
        assert row is not None
        succeeded = row["succeeded"]
        if self.handler == "write":  # done: its row is written as well
            succeeded = min(succeeded, await self._c.fetchval("SELECT count(*) FROM public.bench_effects"))
        return common.Progress(pending=row["pending"], succeeded=succeeded, failed=row["failed"])

    async def analyze(self) -> None:
        await self._c.execute(
            f"ANALYZE {SCHEMA}.pgqueuer, {SCHEMA}.pgqueuer_log, {SCHEMA}.pgqueuer_statistics"
        )

    async def workers_ready(self, workers: int) -> bool:
        connected = await self._c.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE application_name = $1 AND datname = current_database()""",
            WORKER_APP_NAME,
        )
        return bool(connected >= workers)

    def worker_commands(self, workers: int) -> list[list[str]]:
        command = [
            sys.executable,
            "-m",
            "pgqueuer",
            "--schema",
            SCHEMA,
            "run",
            "pgqueuer_app:create_pgqueuer",
            "--batch-size",
            str(self.worker_batch),
            "--log-level",
            WORKER_LOG_LEVEL,
        ]
        return [list(command) for _ in range(workers)]

    def worker_env(self) -> dict[str, str]:
        return common.worker_env({"BENCH_PEERS_DSN": self.dsn, "PGQUEUER_SCHEMA": SCHEMA})


async def main() -> None:
    args = common.parse_args("Benchmark pgqueuer enqueue / drain / end-to-end throughput.")
    common.ensure_database(args.dsn)
    adapter = PgqueuerAdapter(args.dsn, args.handler, args.worker_batch)
    await adapter.open()
    try:
        figures = await common.run_benchmark(adapter, args)
    finally:
        await adapter.close()
    common.result(adapter.name, **figures)


if __name__ == "__main__":
    common.exit_on_sigterm()
    asyncio.run(main())
