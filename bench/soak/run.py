"""One soak run: a private Redis, a private PostgreSQL cluster with the server's production
defaults (autovacuum on, fsync on), two workers and a beat, a steady producer, faults every
``fault_every_s``; sampled every ``sample_s``.

``pg="shared"`` runs on a database of its own on the shared server instead — whatever that
server is set to (this machine's CI server runs with autovacuum off: the job table then grows
with every job, and the verdict says so)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.chaos.fleet import ChaosFleet
from bench.chaos.postgres_server import DATABASE, PrivatePostgres, SharedDatabase, private_cluster_problem
from bench.chaos.procs import wait_until
from bench.chaos.redis_server import PrivateRedis, find_redis_server
from bench.chaos.settings import OFF_SWEEPS, ROOT
from bench.chaos.stream import SteadyStream
from bench.soak.sampler import Sampler
from bench.soak.verdict import judge


@dataclass(frozen=True, slots=True)
class SoakSettings:
    minutes: float = 30.0
    rate_per_s: float = 40.0
    warmup_fraction: float = 0.2
    sample_s: float = 5.0
    fault_every_s: float = 120.0
    retention_s: float = 60.0
    prune_every_s: float = 15.0
    seed: int = 0
    pg: str = "private"
    """``private``: a cluster of the run's own; ``shared``: a database on TEST_POSTGRES_URL's server."""
    autovacuum_naptime_s: float = 60.0
    """The private server's ``autovacuum_naptime`` (PostgreSQL's default: 60 s). A run of a minute
    turns it down, or no vacuum would come round within it."""


def open_database(settings: SoakSettings, stack: ExitStack) -> tuple[Any, str]:
    """The database and its name in ``pg_stat_activity``; closed and removed by ``stack``."""
    if settings.pg == "shared":
        shared = SharedDatabase()
        stack.callback(shared.close)
        return shared, shared.name
    if settings.pg != "private":
        raise ValueError(f"pg must be 'private' or 'shared', not {settings.pg!r}")
    problem = private_cluster_problem()
    if problem is not None:
        raise RuntimeError(f"the soak needs a private PostgreSQL cluster: {problem}")
    # A directory of its own under /tmp: the postgres user must reach it (pytest's are private).
    root = Path(tempfile.mkdtemp(prefix="memtasks-soak-pg-"))
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    root.chmod(0o711)
    cluster = PrivatePostgres(root / "pg", {"autovacuum_naptime": f"{settings.autovacuum_naptime_s}s"})
    stack.callback(cluster.close)
    cluster.init()
    return cluster, DATABASE


def mixed_jobs(rng: random.Random) -> Callable[[int], Any]:
    """Job ``n`` of the soak: four memory-tree kinds in turn, each a few milliseconds of work."""
    from memtasks.domain.jobs import JobKind, NewJob

    kinds = [JobKind.SEAL, JobKind.APPEND_BUFFER, JobKind.EXTRACT_CHUNK, JobKind.REEMBED_BACKFILL]
    payloads: dict[JobKind, Callable[[int], dict[str, Any]]] = {
        JobKind.SEAL: lambda n: {"tree_id": f"t{n % 50}", "level": 0},
        JobKind.APPEND_BUFFER: lambda n: {"tree_id": f"t{n % 50}", "level": 0, "item_id": f"i{n}"},
        JobKind.EXTRACT_CHUNK: lambda n: {"chunk_id": f"c{n}"},
        JobKind.REEMBED_BACKFILL: lambda _n: {"model": "soak"},
    }

    def make(n: int) -> Any:
        kind = kinds[n % len(kinds)]
        return NewJob(kind, payloads[kind](n) | {"work_ms": rng.randint(1, 5)})

    return make


def run(settings: SoakSettings, root: Path) -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError("the soak needs redis-server (apt-get install redis-server)")
    rng = random.Random(settings.seed or None)
    with ExitStack() as stack:
        redis_server = PrivateRedis(root / "redis", binary)
        redis_server.start()
        stack.callback(redis_server.stop)
        database, database_name = open_database(settings, stack)
        beat = dict.fromkeys(OFF_SWEEPS, 86_400.0) | {
            "recover": 1.0,
            "dispatch_due": 1.0,
            "prune_finished": settings.prune_every_s,
            "purge_archive": settings.prune_every_s,
        }
        memtasks_env = {
            "MEMTASKS_DATABASE_URL": database.url,
            "MEMTASKS_BROKER_URL": f"{redis_server.server_url}/0",
            "MEMTASKS_LOCK_REDIS_URL": f"{redis_server.server_url}/1",
            "MEMTASKS_HANDLERS": "bench.soak.handlers:build_registry",
            "MEMTASKS_LEASE_S": "10",
            "MEMTASKS_RETENTION_DAYS": str(settings.retention_s / 86_400),
            # Pruned rows stay in the archive as long again, then the purge sweep deletes them.
            "MEMTASKS_ARCHIVE_GRACE_DAYS": str(settings.retention_s / 86_400),
            "MEMTASKS_BEAT_INTERVALS": json.dumps(beat),
            "MEMTASKS_REDISPATCH_AFTER_S": "5",
            "MEMTASKS_BREAKER_COOLDOWN_S": "2",
        }
        os.environ.update(memtasks_env)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
        env |= memtasks_env | {"PYTHONPATH": str(ROOT)}

        from memtasks.config import load_settings
        from memtasks.producer import Producer as MemtasksProducer
        from memtasks.storage.engine import dispose_all, get_engine

        stack.callback(dispose_all)
        get_engine(database.url)  # migrated
        engine = create_engine(database.url, pool_pre_ping=True, pool_size=2)
        stack.callback(engine.dispose)
        fleet = ChaosFleet(root / "fleet", env, concurrency=2)
        (root / "fleet").mkdir()
        stack.callback(fleet.close)
        fleet.start_workers(["w1", "w2"])
        fleet.start_beat("beat")
        client = redis_server.client()
        stack.callback(client.close)
        sampler = Sampler(
            engine,
            database_name,
            client,
            {"w1": fleet.main_pid("w1"), "w2": fleet.main_pid("w2"), "beat": fleet.beats["beat"].pid},
        )
        producer = MemtasksProducer(load_settings())
        stack.callback(producer.close)
        load = SteadyStream(producer.enqueue_many, mixed_jobs(rng), settings.rate_per_s, "soak-producer")
        load.start()
        stack.callback(load.stop.set)

        duration = settings.minutes * 60
        warmup = duration * settings.warmup_fraction
        samples: list[dict[str, Any]] = []
        faults: list[dict[str, Any]] = []
        started = time.monotonic()
        next_fault = started + settings.fault_every_s
        next_sample = started
        while time.monotonic() - started < duration:
            now = time.monotonic()
            if now >= next_sample:
                try:
                    samples.append(sampler.sample(now - started))
                except Exception as exc:  # a sample during a Redis restart: skipped, counted
                    faults.append({"at_s": round(now - started, 1), "sample_skipped": str(exc)[:200]})
                next_sample += settings.sample_s
            if now >= next_fault:
                # Redis first: the warm-up then includes the reconnections a restart causes.
                if sum(1 for f in faults if "fault" in f) % 2 == 0:
                    redis_server.restart(down_s=1.0)
                    client.close()
                    faults.append({"at_s": round(now - started, 1), "fault": "redis_restart"})
                else:
                    worker = rng.choice(["w1", "w2"])
                    pid = rng.choice(fleet.children(worker))
                    fleet.kill_child(worker, pid)
                    faults.append({"at_s": round(now - started, 1), "fault": "kill_child", "worker": worker})
                next_fault += settings.fault_every_s
            if load.error is not None:
                raise RuntimeError(f"the producer stopped: {load.error}") from load.error
            time.sleep(0.2)
        load.finish()

        def settled() -> bool:
            with engine.connect() as conn:
                left = conn.execute(
                    text("SELECT count(*) FROM mem_tree_jobs WHERE status IN ('ready', 'running')")
                ).scalar_one()
            return int(left) == 0

        wait_until(settled, 120, "every job finished after the load stopped", interval=0.5)
        with engine.connect() as conn:
            leftover = {
                str(k): int(v)
                for k, v in conn.execute(
                    text("SELECT status, count(*) FROM mem_tree_jobs GROUP BY status")
                ).all()
            }
        done_bound = int(settings.rate_per_s * (settings.retention_s + settings.prune_every_s) * 1.5) + 500
        verdict = judge(samples, warmup_s=warmup, done_bound=done_bound, leftover=leftover)
        return {
            "settings": asdict(settings),
            "enqueued": load.sent,
            "samples": len(samples),
            "faults": [f for f in faults if "fault" in f],
            "samples_skipped": sum(1 for f in faults if "sample_skipped" in f),
            **verdict,
            "series": samples,
        }
