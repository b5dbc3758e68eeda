"""The pgqueuer worker factory shared by the benchmark driver and its workers.

Workers run the library's own CLI:
``python -m pgqueuer --schema pgqueuer_bench run pgqueuer_app:create_pgqueuer``;
they read the DSN from BENCH_PEERS_DSN.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# pgqueuer reads its object placement from the environment (cached on first
# use), so pin the dedicated schema before pgqueuer builds any query.
SCHEMA = "pgqueuer_bench"
os.environ["PGQUEUER_SCHEMA"] = SCHEMA

import asyncpg  # noqa: E402
from pgqueuer import Job, PgQueuer  # noqa: E402

ENTRYPOINT = "bench_noop"
WRITE_ENTRYPOINT = "bench_write"
WORKER_APP_NAME = "bench_peers_pgqueuer_worker"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/bench_peers"


async def noop(_job: Job) -> None:
    """The benchmarked entrypoint: does nothing."""


_effects: list[asyncpg.Pool] = []
_effects_lock = asyncio.Lock()


async def write(job: Job) -> None:
    """The durable-effect entrypoint: one row into bench_effects on a connection of its own
    (pgqueuer runs a batch's jobs concurrently and settles them in statements of its own)."""
    if not _effects:
        async with _effects_lock:
            if not _effects:
                dsn = os.environ.get("BENCH_PEERS_DSN", DEFAULT_DSN)
                _effects.append(await asyncpg.create_pool(dsn, min_size=1, max_size=4))
    await _effects[0].execute("INSERT INTO public.bench_effects (job_id) VALUES ($1)", str(job.id))


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """Factory for ``pgq run``: one asyncpg connection, one no-op entrypoint."""
    dsn = os.environ.get("BENCH_PEERS_DSN", DEFAULT_DSN)
    connection = await asyncpg.connect(dsn, server_settings={"application_name": WORKER_APP_NAME})
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)
        pgq.entrypoint(ENTRYPOINT)(noop)
        pgq.entrypoint(WRITE_ENTRYPOINT)(write)
        yield pgq
    finally:
        await connection.close()
