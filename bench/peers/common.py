"""Shared helpers for the peer job-queue benchmarks (procrastinate, pgqueuer).

Each benchmark script plugs a small adapter (see ``QueueAdapter``) into
``run_benchmark``, which runs the four measured phases the same way for every
library:

1. single enqueue  - min(N, 2000) jobs, one library call per job;
2. batched enqueue - N jobs, B per library batch call;
3. drain           - W worker processes started on the N queued jobs;
4. end to end      - W idle workers, then N jobs enqueued in batches.

Only the final JSON object goes to stdout; every log line goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/bench_peers"
SINGLE_ENQUEUE_CAP = 2000
POLL_INTERVAL_S = 0.05
WORKER_STOP_GRACE_S = 10.0
WORKER_READY_TIMEOUT_S = 60.0
# Extra settle time once workers are registered, so their LISTEN / first
# poll is set up before the end-to-end clock starts.
WORKER_SETTLE_S = 1.0
ANALYZE_NOTE = (
    "Tables ANALYZEd (untimed) after the batched enqueue, as autovacuum would on a "
    "long-lived database; drain and end-to-end run on those stats."
)
NO_ANALYZE_NOTE = "Run with --no-analyze: drain/end-to-end on fresh tables without planner stats."


# --------------------------------------------------------------------------
# output


def log(message: str) -> None:
    """Log to stderr (stdout is reserved for the single JSON result)."""
    print(f"[bench-peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def result(name: str, **figures: Any) -> None:
    """Print the one JSON object this run produces on stdout."""
    print(json.dumps({"name": name, **figures}), flush=True)


# --------------------------------------------------------------------------
# clocks


def now() -> float:
    """Monotonic wall clock in seconds."""
    return time.perf_counter()


def per_second(count: int, seconds: float) -> float:
    """Throughput rounded for the report; guards against a zero interval."""
    return round(count / max(seconds, 1e-9), 1)


@dataclass
class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    started: float = 0.0
    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = now()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = now() - self.started


# --------------------------------------------------------------------------
# database


def ensure_database(dsn: str) -> None:
    """Create the DSN's database if missing (connecting to db ``postgres``)."""
    dbname = conninfo_to_dict(dsn).get("dbname") or "postgres"
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            log(f"creating database {dbname}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))


EFFECTS_DDL = "CREATE TABLE IF NOT EXISTS public.bench_effects (job_id TEXT)"
"""The table every system's ``write`` handler inserts one row into (``public`` schema)."""


# --------------------------------------------------------------------------
# worker processes


def start_workers(commands: Sequence[Sequence[str]], env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Start each command as its own OS process in its own process group.

    Worker output goes to our stderr so stdout stays pure JSON.
    """
    procs: list[subprocess.Popen[bytes]] = []
    for command in commands:
        procs.append(
            subprocess.Popen(
                list(command),
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno(),
                stderr=sys.stderr.fileno(),
                start_new_session=True,
            )
        )
    log(f"started {len(procs)} worker process(es): pids {[p.pid for p in procs]}")
    return procs


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker's process group, then SIGKILL whatever remains."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = now() + WORKER_STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - now(), 0.1))
        except subprocess.TimeoutExpired:
            log(f"worker {proc.pid} ignored SIGTERM; killing its group")
        _signal_group(proc, signal.SIGKILL)  # also reaps stray children
        proc.wait()
    if procs:
        log(f"stopped {len(procs)} worker process(es)")
    procs.clear()


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment for worker processes: ours, plus bench/peers on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def exit_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks stop workers."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


# --------------------------------------------------------------------------
# the benchmark


@dataclass
class Progress:
    pending: int  # queued or running
    succeeded: int
    failed: int


class QueueAdapter(Protocol):
    """What a library must provide to be benchmarked by ``run_benchmark``."""

    name: str
    version: str
    notes: str

    async def reset(self) -> None:
        """Drop and recreate the library's schema/tables."""

    async def clear(self) -> None:
        """Delete every job (and its log/event rows)."""

    async def enqueue_one(self) -> None:
        """Enqueue one no-op job with one library call."""

    async def enqueue_many(self, count: int) -> None:
        """Enqueue ``count`` no-op jobs with one library batch call."""

    async def progress(self) -> Progress:
        """Job counts read from the library's tables."""

    async def analyze(self) -> None:
        """ANALYZE the library's tables (fresh tables have no planner stats)."""

    async def workers_ready(self, workers: int) -> bool:
        """True once ``workers`` worker processes are up and registered."""

    def worker_commands(self, workers: int) -> list[list[str]]:
        """One command line per worker process (the library's own worker)."""

    def worker_env(self) -> dict[str, str]:
        """Environment for the worker processes."""


@dataclass
class Args:
    dsn: str
    jobs: int
    workers: int
    batch: int
    timeout: float
    analyze: bool
    handler: str = "noop"
    worker_batch: int = 10
    end_to_end: bool = True


def parse_args(description: str, argv: Sequence[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL DSN (database is created if missing)")
    parser.add_argument("--jobs", type=int, default=10000, help="N: jobs per batched/drain/end-to-end phase")
    parser.add_argument("--workers", type=int, default=2, help="W: worker OS processes")
    parser.add_argument("--batch", type=int, default=1000, help="B: jobs per batched enqueue call")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="seconds allowed per drain/end-to-end phase (0 = max(120, N/20))",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip the untimed ANALYZE of the library's tables after the batched enqueue",
    )
    parser.add_argument(
        "--handler",
        choices=["noop", "write"],
        default="noop",
        help="noop: the task does nothing; write: it inserts one row into bench_effects",
    )
    parser.add_argument(
        "--worker-batch", type=int, default=10, help="jobs a worker takes per fetch (pgqueuer)"
    )
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false", help="skip that phase")
    ns = parser.parse_args(argv)
    if ns.jobs < 1 or ns.workers < 1 or ns.batch < 1:
        parser.error("--jobs, --workers and --batch must be >= 1")
    timeout = ns.timeout or max(120.0, ns.jobs / 20)
    return Args(
        dsn=ns.dsn,
        jobs=ns.jobs,
        workers=ns.workers,
        batch=ns.batch,
        timeout=timeout,
        analyze=ns.analyze,
        handler=ns.handler,
        worker_batch=ns.worker_batch,
        end_to_end=ns.end_to_end,
    )


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = now() + timeout
    while not await check():
        if now() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


def check_workers_alive(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Fail fast when a worker process died (instead of waiting for a timeout)."""
    dead = [(p.pid, p.returncode) for p in procs if p.poll() is not None]
    if dead:
        raise RuntimeError(f"worker process(es) exited early (pid, code): {dead}")


async def wait_all_done(
    adapter: QueueAdapter, jobs: int, timeout: float, procs: Sequence[subprocess.Popen[bytes]]
) -> tuple[float, int]:
    """Poll until ``jobs`` jobs succeeded and none is pending.

    Returns the clock reading of the first poll that saw a finished job and how many it saw
    (the steady drain figure counts only the jobs finished after that poll).
    """
    deadline = now() + timeout
    first_done: float | None = None
    first_count = 0
    while True:
        check_workers_alive(procs)
        prog = await adapter.progress()
        if prog.failed:
            raise RuntimeError(f"{prog.failed} job(s) failed")
        if prog.succeeded and first_done is None:
            first_done, first_count = now(), prog.succeeded
        if prog.pending == 0 and prog.succeeded >= jobs:
            return (first_done, first_count) if first_done is not None else (now(), jobs)
        if now() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s: {prog}")
        await asyncio.sleep(POLL_INTERVAL_S)


async def enqueue_batches(adapter: QueueAdapter, jobs: int, batch: int) -> None:
    for start in range(0, jobs, batch):
        await adapter.enqueue_many(min(batch, jobs - start))


async def phase_single(adapter: QueueAdapter, jobs: int) -> float:
    count = min(jobs, SINGLE_ENQUEUE_CAP)
    with Stopwatch() as sw:
        for _ in range(count):
            await adapter.enqueue_one()
    await adapter.clear()
    log(f"single enqueue: {count} jobs in {sw.seconds:.2f}s")
    return per_second(count, sw.seconds)


async def phase_batch(adapter: QueueAdapter, jobs: int, batch: int) -> float:
    with Stopwatch() as sw:
        await enqueue_batches(adapter, jobs, batch)
    log(f"batched enqueue: {jobs} jobs (batch {batch}) in {sw.seconds:.2f}s")
    return per_second(jobs, sw.seconds)


async def phase_drain(
    adapter: QueueAdapter, args: Args, procs: list[subprocess.Popen[bytes]]
) -> tuple[float, float, float | None]:
    """Drain the N already-queued jobs; clock starts just before worker spawn. Also the steady
    figure: the jobs finished after the first poll that saw one done, over the time since."""
    started = now()
    procs.extend(start_workers(adapter.worker_commands(args.workers), adapter.worker_env()))
    first_done, first_count = await wait_all_done(adapter, args.jobs, args.timeout, procs)
    ended = now()
    stop_workers(procs)
    log(f"drain: {args.jobs} jobs in {ended - started:.2f}s (first done after {first_done - started:.2f}s)")
    # None: every job was done at the first poll (too few jobs to see a steady drain).
    steady = per_second(args.jobs - first_count, ended - first_done) if args.jobs > first_count else None
    return per_second(args.jobs, ended - started), per_second(args.jobs, ended - first_done), steady


async def phase_end_to_end(adapter: QueueAdapter, args: Args, procs: list[subprocess.Popen[bytes]]) -> float:
    await adapter.clear()
    procs.extend(start_workers(adapter.worker_commands(args.workers), adapter.worker_env()))

    async def ready() -> bool:
        check_workers_alive(procs)
        return await adapter.workers_ready(args.workers)

    await wait_for(ready, WORKER_READY_TIMEOUT_S, "workers to register")
    await asyncio.sleep(WORKER_SETTLE_S)
    started = now()
    await enqueue_batches(adapter, args.jobs, args.batch)
    await wait_all_done(adapter, args.jobs, args.timeout, procs)
    ended = now()
    stop_workers(procs)
    log(f"end to end: {args.jobs} jobs in {ended - started:.2f}s")
    return per_second(args.jobs, ended - started)


async def run_benchmark(adapter: QueueAdapter, args: Args) -> dict[str, Any]:
    """Run all phases; always stops the workers it started."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await adapter.reset()
        single = await phase_single(adapter, args.jobs)
        batch = await phase_batch(adapter, args.jobs, args.batch)
        if args.analyze:
            # Untimed: gives the planner stats for a full queue, as autovacuum
            # would on a long-lived database. TRUNCATE keeps these stats.
            await adapter.analyze()
        drain, drain_after_first, steady = await phase_drain(adapter, args, procs)
        e2e = await phase_end_to_end(adapter, args, procs) if args.end_to_end else None
        await adapter.clear()
    finally:
        stop_workers(procs)
    return {
        "version": adapter.version,
        "jobs": args.jobs,
        "workers": args.workers,
        "enqueue_single_per_s": single,
        "enqueue_batch_per_s": batch,
        "drain_per_s": drain,
        "end_to_end_per_s": e2e,
        "drain_after_first_done_per_s": drain_after_first,
        "drain_steady_per_s": steady,
        "batch": args.batch,
        "handler": args.handler,
        "worker_batch": args.worker_batch,
        "analyzed": args.analyze,
        "notes": f"{adapter.notes} {ANALYZE_NOTE if args.analyze else NO_ANALYZE_NOTE}",
    }
