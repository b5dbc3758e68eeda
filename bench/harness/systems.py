"""The systems the harness runs, each the same way: N jobs, 2 worker processes, one handler.

Every run measures a **drain**: N jobs are enqueued first (untimed; the job table is then
ANALYZEd), the workers start, and the clock runs from the first poll that sees a job done
to the poll that sees every job done — the jobs finished after that first poll, over that
time (the peers' scripts compute the same figure, ``drain_steady_per_s``). Worker start-up,
which differs between Celery and the asyncio workers, is left out for every system alike.
Some runs also measure **end to end**: idle workers (up and answering, then 1 s), then the
N jobs enqueued in batches of 1,000, clock from the first enqueue to the last job done.

**Done** is read from each system's own source of truth, polled every 50 ms: memtasks'
``mem_tree_jobs`` (none ready or running, N done); bare Celery's broker (its queue's list
and the ``unacked`` hash empty — with late acks a message leaves them only after its task
ran); the peers' tables (their scripts). With the ``write`` handler, done also needs N rows
in ``bench_effects``.

A system that cannot run raises :class:`SystemFailed` naming it; the harness then fails.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_BENCH = PG_ADMIN.rsplit("/", 1)[0] + "/memtasks_bench"
PG_BENCH_DSN = PG_BENCH.replace("postgresql+psycopg://", "postgresql://")
PEERS_DSN = PG_BENCH_DSN.rsplit("/", 1)[0] + "/bench_peers"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
BROKER, LOCKS = f"{REDIS}/11", f"{REDIS}/12"
PEERS_PY = ROOT / "bench" / ".venv-peers" / "bin" / "python"
PROCESSES = 2
POLL_S = 0.05
ENQUEUE_BATCH = 1_000
SETTLE_S = 1.0
"""Idle time after the workers answer, before an end-to-end run starts (as the peers wait)."""
MEMTASKS_QUEUES = "critical,default,bulk,llm,maintenance"
HANDLERS = {"noop": "bench.handlers:noop_registry", "write": "bench.handlers:write_registry"}


class SystemFailed(RuntimeError):
    """A system of the comparison could not run: the whole benchmark run fails."""

    def __init__(self, system: str, why: str) -> None:
        super().__init__(f"{system}: {why}")
        self.system = system


@dataclass
class Run:
    """What one run of one system measured (jobs/s)."""

    drain: float
    end_to_end: float | None = None
    enqueue_single: float | None = None
    enqueue_batch: float | None = None


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ── shared plumbing ──────────────────────────────────────────────────────────


def reset_databases() -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in ("memtasks_bench", "bench_peers"):
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()


def flush_redis() -> None:
    for url in (BROKER, LOCKS):
        redis.Redis.from_url(url).flushdb()


def effects_table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_effects (job_id VARCHAR(80))"))
        conn.execute(text("DELETE FROM bench_effects"))


def count_effects(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM bench_effects")).scalar_one())


def watch(
    system: str, progress: Callable[[], tuple[int, int]], n: int, timeout: float, alive: Callable[[], None]
) -> tuple[float, float, int]:
    """Poll ``progress() → (pending, done)`` every 50 ms until none is pending and N are done.
    Returns (end, first poll that saw a job done, how many it saw)."""
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    while True:
        alive()
        pending, done = progress()
        now = time.monotonic()
        if done and first is None:
            first = (now, done)
        if pending == 0 and done >= n:
            return (now, *(first or (now, n)))
        if now > deadline:
            raise SystemFailed(system, f"not done within {timeout:.0f} s ({done} of {n} done)")
        time.sleep(POLL_S)


def steady(n: int, end: float, first: float, first_count: int) -> float:
    return (n - first_count) / (end - first) if n > first_count and end > first else math.nan


@contextmanager
def celery_worker(
    system: str, app: str, environment: dict[str, str], queues: str
) -> Iterator[Callable[[], None]]:
    """A ``celery worker`` of ``PROCESSES`` prefork processes; yields its liveness check."""
    log = open(ROOT / "bench" / "results" / f"worker-{system.replace(' ', '_')}.log.tmp", "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", str(PROCESSES)]
    command += [
        "-P",
        "prefork",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "warning",
        "-n",
        f"bench{os.getpid()}@%h",
    ]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def alive() -> None:
        if proc.poll() is not None:
            log.flush()
            tail = (ROOT / "bench" / "results" / f"worker-{system.replace(' ', '_')}.log.tmp").read_text()[
                -800:
            ]
            raise SystemFailed(system, f"its worker exited with {proc.returncode}: {tail}")

    try:
        yield alive
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def wait_ready(system: str, app: Any, alive: Callable[[], None]) -> None:
    """Until the worker answers a ping (it consumes), then the settle time."""
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        alive()
        if time.monotonic() > deadline:
            raise SystemFailed(system, "its worker did not answer within 60 s")
    time.sleep(SETTLE_S)


# ── memtasks ─────────────────────────────────────────────────────────────────


def memtasks_env(database_url: str, handler: str, mode: dict[str, str]) -> dict[str, str]:
    made = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    made.update(
        {
            "PYTHONPATH": str(ROOT),
            "MEMTASKS_DATABASE_URL": database_url,
            "MEMTASKS_BROKER_URL": BROKER,
            "MEMTASKS_LOCK_REDIS_URL": LOCKS,
            "MEMTASKS_HANDLERS": HANDLERS[handler],
            "MEMTASKS_BEAT_INTERVALS": "{}",
            **{f"MEMTASKS_{k}": v for k, v in mode.items()},
        }
    )
    return made


class Memtasks:
    """This process's side of memtasks runs: the settings of a mode, an emptied job table, a publisher."""

    def __init__(self, system: str, handler: str, mode: dict[str, str], database_url: str = PG_BENCH) -> None:
        from memtasks.config import load_settings
        from memtasks.storage.engine import get_engine, reset_registry
        from memtasks.storage.mem_tree_queue import MemTreeJobs
        from memtasks.storage.migrate import upgrade
        from memtasks.worker.conf import client_app
        from memtasks.worker.publisher import CeleryPublisher

        self.system, self.handler = system, handler
        self.environment = memtasks_env(database_url, handler, mode)
        for key in [k for k in os.environ if k.startswith("MEMTASKS_")]:
            del os.environ[key]
        os.environ.update({k: v for k, v in self.environment.items() if k.startswith("MEMTASKS_")})
        reset_registry()
        self.settings = load_settings()
        self.engine = get_engine(database_url)
        upgrade(self.engine)
        self.jobs = MemTreeJobs(self.engine)
        self.app = client_app(self.settings)
        self.publisher = CeleryPublisher(self.app, self.settings)

    def empty(self) -> None:
        flush_redis()
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM mem_tree_jobs"))
        effects_table(self.engine)

    def enqueue(self, n: int, publish: bool = True) -> None:
        from memtasks.domain.jobs import JobKind, NewJob
        from memtasks.services.mem_tree import Followup

        for start in range(0, n, ENQUEUE_BATCH):
            new = [
                NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"c{i}"})
                for i in range(start, min(n, start + ENQUEUE_BATCH))
            ]
            ids = self.jobs.enqueue_many(new, published=publish)
            if publish:
                self.publisher.mem_tree([Followup(i, "extract_chunk") for i in ids if i])

    def progress(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            pending, done = conn.execute(
                text(
                    "SELECT count(CASE WHEN status IN ('ready', 'running') THEN 1 END),"
                    " count(CASE WHEN status = 'done' THEN 1 END) FROM mem_tree_jobs"
                )
            ).one()
        if self.handler == "write":
            done = min(done, count_effects(self.engine))
        return int(pending), int(done)

    def drain(self, n: int) -> float:
        self.empty()
        self.enqueue(n)
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE mem_tree_jobs"))
        with celery_worker(self.system, "memtasks.worker.app", self.environment, MEMTASKS_QUEUES) as alive:
            end, first, count = watch(self.system, self.progress, n, max(120.0, n / 20), alive)
        return steady(n, end, first, count)

    def end_to_end(self, n: int) -> float:
        self.empty()
        with celery_worker(self.system, "memtasks.worker.app", self.environment, MEMTASKS_QUEUES) as alive:
            wait_ready(self.system, self.app, alive)
            start = time.monotonic()
            self.enqueue(n)
            end, _, _ = watch(self.system, self.progress, n, max(120.0, n / 20), alive)
        return n / (end - start)

    def enqueue_rates(self, n: int) -> tuple[float, float]:
        """Rows only (no message), as the peers' enqueue: one at a time, then in batches of 1,000."""
        from memtasks.domain.jobs import JobKind, NewJob

        self.empty()
        single = min(n, 2_000)
        start = time.perf_counter()
        for i in range(single):
            self.jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"s{i}"}))
        one = single / (time.perf_counter() - start)
        self.empty()
        new = [NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"b{i}"}) for i in range(n)]
        start = time.perf_counter()
        for part in range(0, n, ENQUEUE_BATCH):
            self.jobs.enqueue_many(new[part : part + ENQUEUE_BATCH])
        return one, n / (time.perf_counter() - start)

    def close(self) -> None:
        self.app.close()


def memtasks_run(
    system: str,
    n: int,
    handler: str,
    mode: dict[str, str],
    *,
    end_to_end: bool = False,
    database_url: str = PG_BENCH,
) -> Run:
    client = Memtasks(system, handler, mode, database_url)
    try:
        run = Run(drain=client.drain(n))
        if end_to_end:
            run.end_to_end = client.end_to_end(n)
        return run
    finally:
        client.close()


def memtasks_enqueue(n: int) -> Run:
    client = Memtasks("memtasks enqueue", "noop", {})
    try:
        single, batch = client.enqueue_rates(n)
        return Run(drain=math.nan, enqueue_single=single, enqueue_batch=batch)
    finally:
        client.close()


# ── bare Celery ──────────────────────────────────────────────────────────────


def bare_run(system: str, n: int, handler: str, chunk: int | None, *, end_to_end: bool = False) -> Run:
    from bench.bare_app import app

    environment = {
        **memtasks_env(PG_BENCH, handler, {}),
        "BENCH_BROKER_URL": BROKER,
        "BENCH_EFFECTS_DSN": PG_BENCH_DSN,
    }
    engine = create_engine(PG_BENCH)
    broker = redis.Redis.from_url(BROKER)
    size = chunk or 1
    messages = -(-n // size)

    def publish() -> None:
        task = f"bench.{handler}" + ("_chunk" if chunk else "")
        with app.producer_or_acquire() as producer:
            for m in range(messages):
                ids = [f"j{i}" for i in range(m * size, min(n, (m + 1) * size))]
                app.send_task(task, args=[ids] if chunk else [ids[0]], queue="bare", producer=producer)

    def progress() -> tuple[int, int]:
        left = broker.llen("bare") + broker.hlen("unacked")
        pending = min(n, left * size)
        done = count_effects(engine) if handler == "write" else n - pending
        return pending, done

    def one(timed_from_enqueue: bool) -> float:
        flush_redis()
        effects_table(engine)
        if not timed_from_enqueue:
            publish()
        with celery_worker(system, "bench.bare_app", environment, "bare") as alive:
            if timed_from_enqueue:
                wait_ready(system, app, alive)
                start = time.monotonic()
                publish()
                end, _, _ = watch(system, progress, n, max(120.0, n / 20), alive)
                return n / (end - start)
            end, first, count = watch(system, progress, n, max(120.0, n / 20), alive)
            return steady(n, end, first, count)

    try:
        run = Run(drain=one(False))
        if end_to_end:
            run.end_to_end = one(True)
        return run
    finally:
        engine.dispose()


# ── the peers (their own virtualenv, their own scripts) ──────────────────────


def peer_run(
    name: str,
    n: int,
    handler: str,
    *,
    worker_batch: int = 10,
    end_to_end: bool = False,
    python: Path = PEERS_PY,
) -> Run:
    system = f"{name}" + (f" (batch {worker_batch})" if name == "pgqueuer" else "")
    if not python.exists():
        raise SystemFailed(system, f"no interpreter at {python}: run `bash bench/peers/setup.sh`")
    script = ROOT / "bench" / "peers" / f"{name}_bench.py"
    command = [str(python), str(script), "--dsn", PEERS_DSN, "--jobs", str(n), "--workers", str(PROCESSES)]
    command += ["--handler", handler, "--worker-batch", str(worker_batch)]
    if not end_to_end:
        command.append("--no-end-to-end")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemFailed(system, str(exc)) from exc
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemFailed(system, f"exited with {done.returncode}: {tail}")
    try:
        figures: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise SystemFailed(system, f"printed no JSON result: {done.stdout[:200]!r}") from exc
    return Run(
        drain=math.nan if figures["drain_steady_per_s"] is None else float(figures["drain_steady_per_s"]),
        end_to_end=None if figures.get("end_to_end_per_s") is None else float(figures["end_to_end_per_s"]),
        enqueue_single=float(figures["enqueue_single_per_s"]),
        enqueue_batch=float(figures["enqueue_batch_per_s"]),
    )


def versions() -> dict[str, str]:
    import celery

    found = {"celery": celery.__version__}
    if PEERS_PY.exists():
        probe = subprocess.run(
            [
                str(PEERS_PY),
                "-c",
                "import importlib.metadata as m; print(m.version('procrastinate'), m.version('pgqueuer'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            found["procrastinate"], found["pgqueuer"] = probe.stdout.split()
    return found


__all__ = ["Memtasks", "Run", "SystemFailed", "bare_run", "memtasks_enqueue", "memtasks_run", "peer_run"]
