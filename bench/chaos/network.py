"""The partition scenario: a worker host cut off from Redis and PostgreSQL while it holds row
locks, then healed (``python -m bench.chaos.network``; part of ``make chaos``).

Two worker hosts (``bench.chaos.netns``: namespaces, veth links, ``socat`` relays to a private
Redis and a database of the run's own on the shared PostgreSQL), each a ``celery worker``
(prefork, 2 processes) under its own host name; a beat (recover and dispatch every second)
and a producer on this host, which is never cut. Host ``a`` runs two bait ``seal`` jobs that
lock the buffer rows of trees ``hot0`` and ``hot1`` and hold them; host ``b`` starts, a steady
stream of short ``seal`` jobs flows (half on those trees, which need those locks), and host
``a`` is cut off for
``cut_s`` seconds, then healed. Measured, from the job rows (the database's clock):

- ``stranded_done_after_cut_s``: when the last bait job was finished by host ``b`` — the goal
  is before the heal: the lost host's transactions are ended by the server
  (``idle_in_transaction_session_timeout``), their leases recovered, its locks released;
- ``healthy_longest_idle_s``: the longest stretch during the cut in which host ``b`` finished
  no job (goal ≤ 2 s): it never waits on the lost host's locks longer than ``lock_timeout``;
- ``healed_host_back_s``: from the heal to host ``a``'s first finished job (goal ≤ 30 s,
  without a restart);
- nothing lost, no effect twice, host ``a``'s late settles fenced.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.chaos.netns import Host, Relay, netns_problem, unique_tag
from bench.chaos.postgres_server import SharedDatabase
from bench.chaos.procs import end, spawn, wait_until
from bench.chaos.redis_server import PrivateRedis, find_redis_server
from bench.chaos.settings import DEFAULT_OUT, OFF_SWEEPS, ROOT
from bench.chaos.stream import SteadyStream

CELERY = [sys.executable, "-m", "celery", "-A", "memtasks.worker.app"]
QUEUES = "critical,default,bulk,llm,maintenance"
FENCED_MARKERS = (
    "lost its lease; its writes were rolled back",
    "after losing its lease",
    "met a lock after losing",
)


@dataclass(frozen=True, slots=True)
class PartitionSettings:
    cut_s: float = 20.0
    lease_s: float = 6.0
    sweep_s: float = 1.0
    hold_s: float = 25.0
    stream_per_s: float = 20.0
    healed_within_s: float = 30.0
    healthy_idle_max_s: float = 2.0
    seed: int = 0
    bounded: bool = True
    """False: the sessions' lock and idle-in-transaction bounds off (as before they existed),
    for comparison."""


@dataclass
class Worker:
    host: Host
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: Any = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _url_via(url: str, host: str, port: int) -> str:
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


def _now_ms(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
            ).scalar_one()
        )


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT id, status, attempts, claimed_by, started_at_ms, completed_at_ms"
                    " FROM mem_tree_jobs"
                )
            ).mappings()
        ]


def _host_of(row: dict[str, Any]) -> str:
    return str(row["claimed_by"] or "").split(":")[0]


def stream_job(n: int) -> Any:
    """A short seal job; half of them on the two trees whose buffers the bait jobs lock
    (``hot0``, ``hot1``)."""
    from memtasks.domain.jobs import JobKind, NewJob

    return NewJob(JobKind.SEAL, {"tree_id": f"hot{n % 4}" if n % 4 < 2 else f"t{n % 40}", "level": 0, "n": n})


def run_partition(settings: PartitionSettings, root: Path) -> dict[str, Any]:
    problem = netns_problem()
    if problem is not None:
        raise RuntimeError(f"the partition scenario cannot run: {problem}")
    binary = find_redis_server()
    if binary is None:
        raise RuntimeError("the partition scenario needs redis-server (apt-get install redis-server)")
    with ExitStack() as stack:
        redis = PrivateRedis(root / "redis", binary)
        redis.start()
        stack.callback(redis.stop)
        database = SharedDatabase()
        stack.callback(database.close)
        return _run(settings, root, stack, redis, database)
    raise AssertionError("unreachable")


def _run(
    settings: PartitionSettings, root: Path, stack: ExitStack, redis: PrivateRedis, database: SharedDatabase
) -> dict[str, Any]:
    from bench.chaos.handlers import create_tables
    from memtasks.config import load_settings
    from memtasks.producer import Producer
    from memtasks.storage.engine import dispose_all, get_engine

    stack.callback(dispose_all)
    create_tables(get_engine(database.url))
    engine = create_engine(database.url, pool_pre_ping=True, pool_size=2)
    stack.callback(engine.dispose)
    db_port = make_url(database.url).port or 5432

    beat = dict.fromkeys(OFF_SWEEPS, 86400.0) | {
        "recover": settings.sweep_s,
        "dispatch_due": settings.sweep_s,
    }
    common = {
        "MEMTASKS_HANDLERS": "bench.chaos.network_handlers:build_registry",
        "MEMTASKS_LEASE_S": str(settings.lease_s),
        "MEMTASKS_MAX_ATTEMPTS": "10",
        "MEMTASKS_BACKOFF_BASE_S": "0.5",
        "MEMTASKS_BACKOFF_CAP_S": "2",
        "MEMTASKS_REDISPATCH_AFTER_S": "3",
        "MEMTASKS_VISIBILITY_TIMEOUT_S": "60",
        "MEMTASKS_PUBLISH_TIMEOUT_S": "2",
        "MEMTASKS_DRAIN_BATCH": "0",  # one message per job: every job's host is visible
        # Longer than the cut: the cut-off host learns of it only after the heal, and then
        # tries to settle its stranded jobs late — the fence must hold.
        "MEMTASKS_DB_DEAD_PEER_S": str(settings.cut_s + 15),
        **(
            {}
            if settings.bounded
            else {"MEMTASKS_DB_LOCK_TIMEOUT_S": "1000000", "MEMTASKS_DB_IDLE_IN_TRANSACTION_S": "1000000"}
        ),
        "MEMTASKS_BEAT_INTERVALS": json.dumps(beat),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEMTASKS_")}
    base |= {"PYTHONPATH": str(ROOT)}
    direct = common | {
        "MEMTASKS_DATABASE_URL": database.url,
        "MEMTASKS_BROKER_URL": f"{redis.server_url}/0",
        "MEMTASKS_LOCK_REDIS_URL": f"{redis.server_url}/1",
    }

    tag = unique_tag()
    first = random.Random(settings.seed or None).randrange(10, 240)
    hosts = {name: Host(tag, first + i) for i, name in enumerate(("a", "b"))}
    workers: dict[str, Worker] = {}
    for name, host in hosts.items():
        stack.callback(host.destroy)
        host.create()
        pg = Relay(root, f"pg-{name}", host.gateway, db_port)
        rd = Relay(root, f"redis-{name}", host.gateway, redis.port)
        for relay in (pg, rd):
            relay.start()
            stack.callback(relay.stop)
        env = (
            base
            | common
            | {
                "MEMTASKS_DATABASE_URL": _url_via(database.url, host.gateway, pg.port),
                "MEMTASKS_BROKER_URL": f"redis://{host.gateway}:{rd.port}/0",
                "MEMTASKS_LOCK_REDIS_URL": f"redis://{host.gateway}:{rd.port}/1",
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
        log = root / f"worker-{name}.log"
        workers[name] = Worker(host, argv, env, log)

    def start(name: str) -> None:
        w = workers[name]
        w.proc = spawn(w.argv, log=w.log, env=w.env)
        stack.callback(end, w.proc)
        wait_until(lambda: " ready." in w.text(), 90, f"worker on host {name} ready")

    beat_proc = spawn(
        [*CELERY, "beat", "-s", str(root / "beat-schedule"), "-l", "info"],
        log=root / "beat.log",
        env=base | direct,
    )
    stack.callback(end, beat_proc)

    os.environ.update(direct)  # the producer below reads the same settings
    producer = Producer(load_settings())
    stack.callback(producer.close)

    from memtasks.domain.jobs import JobKind, NewJob

    start("a")
    baits = [
        producer.enqueue(NewJob(JobKind.SEAL, {"tree_id": f"hot{i}", "level": 0, "hold_s": settings.hold_s}))
        for i in range(2)
    ]

    def baits_running_on_a() -> bool:
        """Both baits running on host a for a second and more (holding their locks, not
        waiting for one)."""
        now = _now_ms(engine)
        rows = {r["id"]: r for r in _rows(engine)}
        return all(
            rows[b]["status"] == "running"
            and _host_of(rows[b]) == "host-a"
            and now - int(rows[b]["started_at_ms"]) > 1_000
            for b in baits
        )

    wait_until(baits_running_on_a, 60, "both bait jobs running on host a")
    start("b")
    stream = SteadyStream(producer.enqueue_many, stream_job, settings.stream_per_s, "stream")
    stream.start()
    stack.callback(stream.stop.set)
    wait_until(
        lambda: any(_host_of(r) == "host-b" and r["status"] == "done" for r in _rows(engine)),
        60,
        "host b at work",
    )
    time.sleep(2.0)  # a steady state before the cut
    if not baits_running_on_a():
        raise RuntimeError("the bait jobs stopped running on host a before the cut")

    cut_ms = _now_ms(engine)
    hosts["a"].cut()
    try:
        end_at = time.monotonic() + settings.cut_s
        while time.monotonic() < end_at:
            time.sleep(0.1)
    finally:
        hosts["a"].heal()
    heal_ms = _now_ms(engine)

    def a_back() -> bool:
        return any(
            _host_of(r) == "host-a" and r["status"] == "done" and int(r["completed_at_ms"]) > heal_ms
            for r in _rows(engine)
        )

    back_deadline = settings.healed_within_s + 30
    with contextlib.suppress(Exception):
        wait_until(a_back, back_deadline, "host a at work again")
    stream.finish()
    with contextlib.suppress(Exception):
        wait_until(lambda: all(r["status"] == "done" for r in _rows(engine)), 120, "every job done")

    rows = _rows(engine)
    with engine.connect() as conn:
        effects: dict[str, int] = {
            str(r[0]): int(r[1])
            for r in conn.execute(text("SELECT job_id, count(*) FROM chaos_effects GROUP BY job_id"))
        }
    with engine.connect() as conn:
        tokens = {r[0]: r[1] for r in conn.execute(text("SELECT job_id, lease_token FROM chaos_effects"))}
        history = {
            r[0]: r[1]
            for r in conn.execute(
                text("SELECT id, attempt_history FROM mem_tree_jobs WHERE id = ANY(:ids)"), {"ids": baits}
            )
        }
    by_id = {r["id"]: r for r in rows}
    bait_rows = [by_id[b] for b in baits]
    b_done = sorted(
        int(r["completed_at_ms"])
        for r in rows
        if _host_of(r) == "host-b"
        and r["status"] == "done"
        and cut_ms <= int(r["completed_at_ms"]) <= heal_ms
    )
    marks = [cut_ms, *b_done, heal_ms]
    a_after = [
        int(r["completed_at_ms"])
        for r in rows
        if _host_of(r) == "host-a" and r["status"] == "done" and int(r["completed_at_ms"]) > heal_ms
    ]
    log_a = workers["a"].text()
    figures: dict[str, Any] = {
        "settings": asdict(settings),
        "jobs": len(rows),
        "done": sum(1 for r in rows if r["status"] == "done"),
        "lost": sum(1 for r in rows if r["status"] != "done"),
        "double_effects": sum(1 for n in effects.values() if n > 1),
        "done_without_effect": sum(1 for r in rows if r["status"] == "done" and effects.get(r["id"], 0) != 1),
        "stranded_jobs": len(baits),
        "stranded_finished_by": sorted({_host_of(r) for r in bait_rows}),
        "stranded_done_after_cut_s": round(
            (max(int(r["completed_at_ms"] or 0) for r in bait_rows) - cut_ms) / 1000, 2
        ),
        "stranded_done_before_heal": all(
            r["status"] == "done" and int(r["completed_at_ms"]) < heal_ms for r in bait_rows
        ),
        "cut_s": round((heal_ms - cut_ms) / 1000, 2),
        "healthy_jobs_during_cut": len(b_done),
        "healthy_longest_idle_s": round(max(b - a for a, b in itertools.pairwise(marks)) / 1000, 2),
        "healed_host_back_s": round((min(a_after) - heal_ms) / 1000, 2) if a_after else None,
        "late_settles_fenced": sum(log_a.count(m) for m in FENCED_MARKERS),
        "stranded_effects_from_host_b": all(tokens.get(b) is not None for b in baits)
        and all(_host_of(by_id[b]) == "host-b" for b in baits),
        "stranded_history": {
            b: [(e["outcome"], e["worker"]) for e in json.loads(history[b] or "[]")] for b in baits
        },
        "lock_waits_stepped_aside": sum(workers[n].text().count("met a row lock") for n in workers),
    }
    figures["ok"] = bool(
        figures["lost"] == 0
        and figures["double_effects"] == 0
        and figures["done_without_effect"] == 0
        and figures["stranded_done_before_heal"]
        and figures["stranded_finished_by"] == ["host-b"]
        and figures["healed_host_back_s"] is not None
        and figures["healed_host_back_s"] <= settings.healed_within_s
        and figures["late_settles_fenced"] >= 1
        and figures["stranded_effects_from_host_b"]
        and figures["healthy_longest_idle_s"] <= settings.healthy_idle_max_s
    )
    return figures


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="memtasks-net-"))
    try:
        yield root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def save(figures: dict[str, Any], out: Path, name: str = "partition") -> None:
    """Under ``network.<name>`` in ``out``, keeping the file's other keys."""
    current = json.loads(out.read_text()) if out.exists() else {}
    current.setdefault("network", {})[name] = figures
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(current, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.network", description=__doc__.split("\n")[0])
    parser.add_argument("--cut", type=float, default=20.0, help="seconds host a is cut off (default 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file; figures go under 'network'")
    parser.add_argument("--logs", type=Path, default=None, help="copy the run's logs here")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="turn the sessions' lock and idle-in-transaction bounds off, for comparison (saved as"
        " 'partition_unbounded')",
    )
    args = parser.parse_args(argv)
    with run_directory() as root:
        try:
            figures = run_partition(PartitionSettings(cut_s=args.cut, bounded=not args.unbounded), root)
        finally:
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for path in root.glob("*.log"):
                    (args.logs / path.name).write_bytes(path.read_bytes())
    for key, value in figures.items():
        print(f"  {key:<28} {value}")
    save(figures, args.out, "partition_unbounded" if args.unbounded else "partition")
    if args.unbounded:
        print("partition without the session bounds: figures saved for comparison")
        return 0
    print("partition: " + ("every check holds" if figures["ok"] else "FAILED"))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
