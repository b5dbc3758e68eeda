"""The fleet the network scenarios run: two worker hosts and what they reach through relays.

Two worker hosts (``bench.chaos.netns``: namespaces, veth links, relays to a private Redis and a
database of the run's own on the shared PostgreSQL), each a ``celery worker`` (prefork, 2
processes) under its own host name (``host-a``, ``host-b``); a beat (recover and dispatch every
second) and a producer on this host, which is never cut. The scenarios (:mod:`.network`,
:mod:`.link_faults`) spoil host ``a``'s link and read the outcome from the job rows, whose times
are the database's.
"""

from __future__ import annotations

import json
import os
import random
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.chaos.netns import Host, Relay, netns_problem, unique_tag
from bench.chaos.postgres_server import SharedDatabase
from bench.chaos.procs import end, spawn, wait_until
from bench.chaos.redis_server import PrivateRedis, find_redis_server
from bench.chaos.settings import OFF_SWEEPS, ROOT

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
QUEUES = "critical,default,bulk,llm,maintenance"
HOSTS = ("a", "b")


@dataclass
class Worker:
    host: Host
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: Any = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class FleetShape:
    """What the scenario wants of the fleet."""

    lease_s: float
    sweep_s: float = 1.0
    env: dict[str, str] = field(default_factory=dict)
    """Extra ``MEMTASKS_*`` settings for every process."""
    spoilable: bool = False
    """Host a's relays are :mod:`bench.chaos.link_relay` (slow or silence them), not socat."""
    delay_ms: float = 0.0
    """Host a's link starts this slow, each way (spoilable only)."""
    seed: int = 0


class NetFleet:
    """Started by :func:`start_fleet`; its processes end with the :class:`ExitStack` given."""

    def __init__(self, root: Path, stack: ExitStack, shape: FleetShape) -> None:
        self.root = root
        self.stack = stack
        self.shape = shape
        self.workers: dict[str, Worker] = {}
        self.hosts: dict[str, Host] = {}
        self.relays: dict[str, dict[str, Relay]] = {}
        self.engine: Engine
        self.producer: Any = None

    def start_worker(self, name: str) -> None:
        w = self.workers[name]
        w.proc = spawn(w.argv, log=w.log, env=w.env)
        self.stack.callback(end, w.proc)
        wait_until(lambda: " ready." in w.text(), 90, f"worker on host {name} ready")

    def now_ms(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
                ).scalar_one()
            )

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT id, status, attempts, claimed_by, created_at_ms, started_at_ms,"
                        " completed_at_ms FROM mem_tree_jobs"
                    )
                ).mappings()
            ]

    def effects(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                str(r[0]): int(r[1])
                for r in conn.execute(text("SELECT job_id, count(*) FROM chaos_effects GROUP BY job_id"))
            }

    def outcome(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Lost, double effects, done without its effect: the counts every scenario holds at 0."""
        effects = self.effects()
        return {
            "jobs": len(rows),
            "done": sum(1 for r in rows if r["status"] == "done"),
            "lost": sum(1 for r in rows if r["status"] != "done"),
            "double_effects": sum(1 for n in effects.values() if n > 1),
            "done_without_effect": sum(
                1 for r in rows if r["status"] == "done" and effects.get(r["id"], 0) != 1
            ),
        }


def host_of(row: dict[str, Any]) -> str:
    return str(row["claimed_by"] or "").split(":")[0]


def _url_via(url: str, host: str, port: int) -> str:
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


def start_fleet(root: Path, stack: ExitStack, shape: FleetShape) -> NetFleet:
    """The servers, both hosts with their relays, the beat and the producer; no worker yet
    (:meth:`NetFleet.start_worker`)."""
    problem = netns_problem()
    if problem is not None:
        raise RuntimeError(f"the network scenarios cannot run: {problem}")
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError("the network scenarios need redis-server (apt-get install redis-server)")
    redis = PrivateRedis(root / "redis", binary)
    redis.start()
    stack.callback(redis.stop)
    database = SharedDatabase()
    stack.callback(database.close)

    from bench.chaos.handlers import create_tables
    from memtasks.config import load_settings
    from memtasks.producer import Producer
    from memtasks.storage.engine import dispose_all, get_engine

    fleet = NetFleet(root, stack, shape)
    stack.callback(dispose_all)
    create_tables(get_engine(database.url))
    fleet.engine = create_engine(database.url, pool_pre_ping=True, pool_size=2)
    stack.callback(fleet.engine.dispose)
    db_port = make_url(database.url).port or 5432

    beat = dict.fromkeys(OFF_SWEEPS, 86400.0) | {"recover": shape.sweep_s, "dispatch_due": shape.sweep_s}
    common = {
        "MEMTASKS_HANDLERS": "bench.chaos.network_handlers:build_registry",
        "MEMTASKS_LEASE_S": str(shape.lease_s),
        "MEMTASKS_MAX_ATTEMPTS": "10",
        "MEMTASKS_BACKOFF_BASE_S": "0.5",
        "MEMTASKS_BACKOFF_CAP_S": "2",
        "MEMTASKS_REDISPATCH_AFTER_S": "3",
        "MEMTASKS_VISIBILITY_TIMEOUT_S": "60",
        "MEMTASKS_PUBLISH_TIMEOUT_S": "2",
        "MEMTASKS_DRAIN_BATCH": "0",  # one message per job: every job's host is visible
        "MEMTASKS_BEAT_INTERVALS": json.dumps(beat),
        **shape.env,
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    base |= {"PYTHONPATH": str(ROOT)}
    direct = common | {
        "MEMTASKS_DATABASE_URL": database.url,
        "MEMTASKS_BROKER_URL": f"{redis.server_url}/0",
        "MEMTASKS_LOCK_REDIS_URL": f"{redis.server_url}/1",
    }

    tag = unique_tag()
    first = random.Random(shape.seed or None).randrange(10, 240)
    for i, name in enumerate(HOSTS):
        host = Host(tag, first + i)
        fleet.hosts[name] = host
        stack.callback(host.destroy)
        host.create()
        spoil = {"spoilable": True, "delay_ms": shape.delay_ms} if shape.spoilable and name == "a" else {}
        relays = {
            "pg": Relay(root, f"pg-{name}", host.gateway, db_port, **spoil),  # type: ignore[arg-type]
            "redis": Relay(root, f"redis-{name}", host.gateway, redis.port, **spoil),  # type: ignore[arg-type]
        }
        fleet.relays[name] = relays
        for relay in relays.values():
            relay.start()
            stack.callback(relay.stop)
        env = (
            base
            | common
            | {
                "MEMTASKS_DATABASE_URL": _url_via(database.url, host.gateway, relays["pg"].port),
                "MEMTASKS_BROKER_URL": f"redis://{host.gateway}:{relays['redis'].port}/0",
                "MEMTASKS_LOCK_REDIS_URL": f"redis://{host.gateway}:{relays['redis'].port}/1",
            }
        )
        argv = host.command(
            [
                "unshare",
                "--uts",
                "sh",
                "-c",
                f'hostname host-{name} && exec "$@"',
                "worker-host",
                *CELERY,
                "worker",
                "-n",
                f"w{name}@%h",
                "-Q",
                QUEUES,
                "-P",
                "prefork",
                "-c",
                "2",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "info",
            ]
        )
        fleet.workers[name] = Worker(host, argv, env, root / f"worker-{name}.log")

    beat_proc = spawn(
        [*CELERY, "beat", "-s", str(root / "beat-schedule"), "-l", "info"],
        log=root / "beat.log",
        env=base | direct,
    )
    stack.callback(end, beat_proc)

    os.environ.update(direct)  # the producer below reads the same settings
    fleet.producer = Producer(load_settings())
    stack.callback(fleet.producer.close)
    return fleet


__all__ = ["CELERY", "FleetShape", "NetFleet", "Worker", "host_of", "start_fleet"]
