"""One chaos run, from the private servers to the verdict; everything is torn down at the end,
also on a failure or Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.chaos.postgres_server import Database, PrivatePostgres, SharedDatabase, private_cluster_problem
from bench.chaos.procs import Deadline, wait_until
from bench.chaos.redis_server import PrivateRedis, find_redis_server
from bench.chaos.settings import ROOT, ChaosSettings, Endpoints

log = logging.getLogger("bench.chaos")


class SetupError(RuntimeError):
    """What the run needs and does not have, named."""


def preflight(settings: ChaosSettings) -> str | None:
    """Why this machine cannot run the chaos suite, or None."""
    if find_redis_server() is None:
        return (
            "the chaos suite needs redis-server (it restarts and flushes a private one, never the "
            "shared server): install it with `apt-get install redis-server`"
        )
    if settings.pg_mode == "private":
        problem = private_cluster_problem()
        if problem is not None:
            return f"a private PostgreSQL cluster cannot be made: {problem}"
    return None


def pg_mode(settings: ChaosSettings) -> str:
    if settings.pg_mode in {"private", "shared"}:
        return settings.pg_mode
    return "private" if private_cluster_problem() is None else "shared"


@contextlib.contextmanager
def run_directory(keep_logs: Path | None) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="memtasks-chaos-"))
    try:
        root.chmod(0o711)  # the postgres user must reach its cluster directory below
        yield root
    finally:
        if keep_logs is not None:
            copy_logs(root, keep_logs)
        shutil.rmtree(root, ignore_errors=True)


def copy_logs(root: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in {".log", ".jsonl"}:
            shutil.copy2(path, target / path.name)


def open_database(settings: ChaosSettings, root: Path) -> Database:
    if pg_mode(settings) == "private":
        cluster = PrivatePostgres(root / "pg")
        try:
            cluster.init()
        except BaseException:
            cluster.close()
            raise
        return cluster
    try:
        return SharedDatabase()
    except Exception as exc:
        raise SetupError(
            "no initdb for a private PostgreSQL cluster, and the shared server at TEST_POSTGRES_URL "
            f"refused a database of the run's own: {exc}"
        ) from exc


def unfinished(engine: Engine) -> int:
    """Rows of either job table that are not finished yet."""
    query = text(
        "SELECT (SELECT count(*) FROM mem_tree_jobs WHERE status NOT IN ('done', 'failed', 'cancelled'))"
        " + (SELECT count(*) FROM decay_jobs WHERE state NOT IN ('completed', 'failed', 'cancelled'))"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def run(settings: ChaosSettings) -> dict[str, Any]:
    """Run the suite with ``settings``; the figures (also written to ``settings.out``)."""
    problem = preflight(settings)
    if problem is not None:
        raise SetupError(problem)
    started = time.monotonic()
    with ExitStack() as stack:
        root = stack.enter_context(run_directory(settings.logs))
        logging.basicConfig(
            filename=root / "driver.log",
            level=logging.INFO,
            format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
            force=True,
        )
        binary = find_redis_server()
        assert binary is not None
        redis = PrivateRedis(root / "redis", binary)
        redis.start()
        stack.callback(redis.stop)
        database = open_database(settings, root)
        stack.callback(database.close)
        endpoints = Endpoints(database.url, redis.port)
        print(
            f"chaos: seed {settings.seed}, {settings.jobs:,} jobs over {settings.duration_s:.0f} s, "
            f"redis on :{redis.port}, PostgreSQL: {database.mode} ({endpoints.database_url})",
            flush=True,
        )
        try:
            figures = _run_fleet(settings, stack, root, redis, database, endpoints)
        except BaseException:
            _show_logs(root)
            raise
    figures["duration_s"] = round(time.monotonic() - started, 1)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _run_fleet(
    settings: ChaosSettings,
    stack: ExitStack,
    root: Path,
    redis: PrivateRedis,
    database: Database,
    endpoints: Endpoints,
) -> dict[str, Any]:
    exec_dir = root / "exec"
    exec_dir.mkdir()
    memtasks_env = {**settings.fleet_env(), **endpoints.env()}
    # The driver's own memtasks objects read the same settings: nothing here can reach the
    # shared servers, not even a default.
    os.environ.update(memtasks_env)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    env |= memtasks_env | {"PYTHONPATH": str(ROOT), "CHAOS_EXEC_DIR": str(exec_dir)}

    from bench.chaos import decay_work
    from bench.chaos.checker import Checker, Evidence
    from bench.chaos.executions import ExecLog
    from bench.chaos.faults import FaultDriver, now_ms
    from bench.chaos.fleet import ChaosFleet
    from bench.chaos.handlers import create_tables
    from bench.chaos.observer import Observer
    from bench.chaos.workload import Enqueuer, PacedProducer, interleave, plan
    from memtasks.config import load_settings
    from memtasks.producer import Producer
    from memtasks.storage.engine import dispose_all, get_engine

    stack.callback(dispose_all)
    create_tables(get_engine(endpoints.database_url))
    rng = random.Random(settings.seed)
    jobs = plan(settings, rng)
    decay_jobs = decay_work.plan_decay(
        int(settings.jobs * settings.decay_fraction),
        settings.jobs + 1_000_000,
        rng,
        flaky=settings.decay_flaky_fraction,
        missing=settings.decay_missing_fraction,
    )
    decay_work.prepare(get_engine(endpoints.database_url), decay_jobs)
    engine = create_engine(endpoints.database_url, pool_pre_ping=True, pool_size=2)
    stack.callback(engine.dispose)

    fleet_dir = root / "fleet"
    fleet_dir.mkdir()
    fleet = ChaosFleet(fleet_dir, env, settings.concurrency)
    stack.callback(fleet.close)
    names = [f"w{i + 1}" for i in range(settings.workers)]
    fleet.start_workers(names)
    fleet.start_beat("beat")
    t0 = now_ms()

    def progress(counts: dict[str, int]) -> None:
        at = (now_ms() - t0) / 1000
        shown = " ".join(f"{k}={counts.get(k, 0)}" for k in ("ready", "running", "done", "failed"))
        print(f"[{at:7.1f}s] progress        {shown}", flush=True)

    observer = Observer(endpoints.database_url, on_progress=progress, snapshot_every_s=5.0)
    observer.start()
    stack.callback(observer.close)

    producer = Producer(load_settings())
    stack.callback(producer.close)
    paced = PacedProducer(
        interleave(jobs, decay_jobs), settings.duration_s, Enqueuer(producer, settings.max_attempts)
    )
    paced.start()
    stack.callback(paced.stop)

    bait_producer = Producer(load_settings())
    stack.callback(bait_producer.close)
    exec_log = ExecLog(exec_dir)
    driver = FaultDriver(
        settings=settings,
        fleet=fleet,
        redis=redis,
        database=database,
        enqueuer=Enqueuer(bait_producer, settings.max_attempts),
        exec_log=exec_log,
        engine=engine,
        rng=random.Random(settings.seed + 1),
        t0_ms=t0,
        next_bait=settings.jobs,
    )
    driver.run(producing=lambda: not paced.finished.is_set())
    paced.finished.wait()
    if paced.error is not None:
        raise RuntimeError(f"the producer stopped: {paced.error}") from paced.error
    print(f"[{(now_ms() - t0) / 1000:7.1f}s] faults done, every job enqueued; draining", flush=True)
    with contextlib.suppress(Deadline):
        wait_until(lambda: unfinished(engine) == 0, settings.drain_timeout_s, "every job finished", 0.2)
    drained_ms = now_ms()

    fleet.close()
    observer.stop()
    observer.on_progress = None
    observer.snapshot()  # after the fleet stopped: late settles had their chance
    exec_log.refresh()
    evidence = Evidence(
        settings=settings,
        planned=[*jobs, *driver.baits],
        planned_decay=decay_jobs,
        executions=exec_log.records,
        expired=observer.expired_leases(),
        changes=observer.changes,
        snapshots=observer.snapshots,
        faults=driver.records,
        fault_types=driver.types,
        worker_logs={k: v for k, v in fleet.logs().items() if k.startswith("w")},
    )
    figures = Checker(engine, evidence).check()
    figures.update(
        seed=settings.seed,
        pg_mode=database.mode,
        run_s=round((drained_ms - t0) / 1000, 1),
        workers=settings.workers,
        concurrency=settings.concurrency,
        lease_s=settings.lease_s,
        sweep_s=settings.sweep_s,
        recovery_tolerance_s=settings.recovery_tolerance_s,
        max_attempts=settings.max_attempts,
        backoff_s=[settings.backoff_base_s, settings.backoff_cap_s],
        redispatch_after_s=settings.redispatch_after_s,
        enqueue_retries=paced.enqueuer.retries,
        expired_leases_seen=len(evidence.expired),
        observer_errors=observer.errors,
        fault_log=[f.as_json(t0) for f in driver.records],
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return figures


def _show_logs(root: Path) -> None:
    for path in [*sorted((root / "fleet").glob("*.log")), root / "driver.log"]:
        if path.exists():
            tail = path.read_text(errors="replace")[-3000:]
            print(f"--- {path.name} (tail) ---\n{tail}", file=sys.stderr)
