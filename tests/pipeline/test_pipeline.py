"""The pipeline end to end: real `celery worker`/`celery beat` processes, real Redis, real databases."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from memtasks.config import Settings, load_settings
from memtasks.domain.jobs import JobKind, Lease, NewJob
from memtasks.domain.tree import extract_chunk_job, seal_job
from memtasks.services.mem_tree import Followup
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import Job, MemTreeJobs
from memtasks.storage.memory_tables import consolidation_runs
from memtasks.storage.tables import mem_tree_jobs as t
from memtasks.storage.tree_repo import NewChunk, TreeStore
from memtasks.worker import conf, names
from memtasks.worker.publisher import CeleryPublisher
from tests.pipeline.conftest import RABBIT_URL
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, observe, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def count_status(db_url: str, *statuses: str, kind: str | None = None) -> int:
    """Rows in any of ``statuses``, counted in one statement (one snapshot)."""
    stmt = select(func.count()).select_from(t).where(t.c.status.in_(statuses))
    if kind is not None:
        stmt = stmt.where(t.c.kind == kind)
    with get_engine(db_url).connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def run_producer(broker: str, count: int, prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/pipeline/_producer.py"), broker, str(count), prefix],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sent {count}"


def test_a_producer_that_knows_only_task_names(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    fleet.worker(concurrency=4)
    run_producer(broker_url, 1000, "p")
    wait_until(lambda: count_status(db_url, "done") == 1000, 180, "1,000 jobs done", fleet)
    with get_engine(db_url).connect() as conn:
        rows = conn.execute(select(t.c.kind, t.c.attempts, t.c.status)).all()
    assert len(rows) == 1000
    assert {(r.kind, r.attempts, r.status) for r in rows} == {("seal", 1, "done")}


# ── helpers for tests that enqueue from this process ─────────────────────────


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        if key.startswith("MEMTASKS_"):
            monkeypatch.setenv(key, value)
    return load_settings()


def enqueue_and_publish(settings: Settings, jobs: list[NewJob]) -> list[str]:
    queue = MemTreeJobs(get_engine(settings.resolved_database_url))
    ids = [i for i in queue.enqueue_many(jobs, published=True) if i is not None]
    assert len(ids) == len(jobs)
    publish(settings, [Followup(i, j.kind.value) for i, j in zip(ids, jobs, strict=True)])
    return ids


def publish(settings: Settings, jobs: list[Followup]) -> None:
    with client_app(settings) as app:
        CeleryPublisher(app, settings).mem_tree(jobs)


@contextmanager
def client_app(settings: Settings) -> Iterator[Celery]:
    """A Celery client app of this test process; its broker connections are closed afterwards."""
    app = conf.client_app(settings)
    try:
        yield app
    finally:
        app.close()


def job(db_url: str, job_id: str) -> Job:
    found = MemTreeJobs(get_engine(db_url)).get(job_id)
    assert found is not None
    return found


def probe_job(name: str, **behaviour: object) -> NewJob:
    return NewJob(JobKind.REEMBED_BACKFILL, {"probe": name, **behaviour})


def runs(probes: redis.Redis, name: str) -> int:
    return int(probes.get(f"probe:{name}:runs") or 0)


FAST_BEAT = {"dispatch_due": 0.3, "recover": 0.5}


# ── priority ─────────────────────────────────────────────────────────────────


def test_seal_jobs_overtake_a_bulk_backlog(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    engine = get_engine(db_url)
    TreeStore(engine).add_chunks(
        [NewChunk(f"c{i}", "tree", f"src{i % 5}", f"Chunk {i} about Paris.") for i in range(2000)]
    )
    bulk = enqueue_and_publish(settings, [extract_chunk_job(f"c{i}") for i in range(2000)])
    seals = enqueue_and_publish(settings, [seal_job(f"empty{i}", 0) for i in range(50)])

    fleet.worker(concurrency=2)
    wait_until(lambda: count_status(db_url, "done", kind="seal") >= 50, 120, "50 seal jobs done", fleet)

    with engine.connect() as conn:
        seal_done = conn.execute(select(func.max(t.c.completed_at_ms)).where(t.c.id.in_(seals))).scalar_one()
        bulk_before = conn.execute(
            select(func.count()).where(
                t.c.id.in_(bulk), t.c.status == "done", t.c.completed_at_ms <= seal_done
            )
        ).scalar_one()
    assert bulk_before < 1000, f"{bulk_before} of 2,000 bulk jobs finished before the last seal"


# ── retries ──────────────────────────────────────────────────────────────────


def test_a_transient_failure_retries_with_backoff_then_succeeds(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        backoff_base_s=0.3,
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker()
    fleet.beat()
    [job_id] = enqueue_and_publish(settings, [probe_job("flaky", fail_times=2)])

    wait_until(lambda: job(db_url, job_id).status == "done", 60, "the flaky job done", fleet)
    row = job(db_url, job_id)
    assert row.attempts == 3
    assert row.last_backoff_ms == 600, "the second failure waited base × 2"
    assert (runs(probes, "flaky"), int(probes.get("probe:flaky:ok") or 0)) == (3, 1)


def test_a_long_backoff_under_a_short_visibility_timeout_runs_once(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        backoff_base_s=3600,
        visibility_timeout_s=10,
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker(concurrency=2)
    fleet.worker("w2", concurrency=2)
    fleet.beat()
    [job_id] = enqueue_and_publish(settings, [probe_job("slow-retry", fail_times=1)])
    wait_until(
        lambda: job(db_url, job_id).last_backoff_ms == 3_600_000, 60, "the first attempt failed", fleet
    )
    # Duplicate deliveries of the same message, as a visibility timeout would make them.
    publish(settings, [Followup(job_id, "reembed_backfill")] * 3)

    observe(25)  # more than twice the visibility timeout

    assert runs(probes, "slow-retry") == 1
    row = job(db_url, job_id)
    assert (row.status, row.attempts) == ("ready", 1)


# ── crashes and broker loss ──────────────────────────────────────────────────


def test_a_killed_worker_s_job_is_recovered_and_its_late_settle_changes_nothing(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.env = fleet_env(
        database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, beat=FAST_BEAT, lease_s=3
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker("w1")
    fleet.beat()
    [job_id] = enqueue_and_publish(settings, [probe_job("crash", sleep_attempts=1, sleep_s=120)])
    wait_until(lambda: runs(probes, "crash") == 1, 60, "the job started", fleet)
    stale_token = job(db_url, job_id).lease_token
    assert stale_token is not None

    fleet.kill9("w1")
    fleet.worker("w2")

    wait_until(lambda: job(db_url, job_id).status == "done", 90, "the job recovered and done", fleet)
    done = job(db_url, job_id)
    assert done.attempts == 2
    assert MemTreeJobs(get_engine(db_url)).settle_done(Lease(job_id, stale_token)) is False
    assert job(db_url, job_id) == done, "the killed worker's late settle changed nothing"


def test_every_job_completes_after_the_broker_is_flushed(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        redispatch_after_s=1,
    )
    settings = settings_from(fleet.env, monkeypatch)
    enqueue_and_publish(settings, [seal_job(f"flushed{i}", 0) for i in range(500)])
    broker = redis.Redis.from_url(broker_url)
    queued = sum(broker.llen(key) for key in broker.scan_iter("critical*"))
    assert queued == 1, "the burst travels as one drain message"
    broker.flushall()

    fleet.worker(concurrency=4)
    fleet.beat()
    wait_until(lambda: count_status(db_url, "done") == 500, 120, "500 jobs done after FLUSHALL", fleet)


# ── beat ─────────────────────────────────────────────────────────────────────


def test_two_beats_tick_consolidation_through_its_one_guard(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str
) -> None:
    """Consolidation guards its ticks itself — its lock gate, then its time gate — and nothing
    else stands in front: with two beats every tick reaches the ledger (ran, or skipped at the
    gate that stopped it), and runs never overlap nor come closer than the time gate allows."""
    min_gap_s = 3.0
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat={"consolidate": 1.0},
        consolidate_min_hours=min_gap_s / 3600,
        consolidate_min_sessions=0,
    )
    fleet.worker("w1", concurrency=4)
    fleet.beat("beat1")
    fleet.beat("beat2")
    engine = get_engine(db_url)

    def ledger() -> list[Any]:
        with engine.connect() as conn:
            return list(conn.execute(select(consolidation_runs).order_by(consolidation_runs.c.started_at_ms)))

    def ran() -> list[Any]:
        return [r for r in ledger() if r.outcome == "ran"]

    wait_until(lambda: len(ran()) >= 3, 90, "three consolidation runs", fleet)
    fleet.stop("beat1")
    fleet.stop("beat2")

    def ticks() -> int:
        return fleet.log("w1").count(f"Task {names.CONSOLIDATE}[") // 2  # received, then succeeded

    wait_until(lambda: ticks() == len(ledger()), 30, "every tick in the ledger", fleet)
    rows = ledger()
    assert {r.outcome for r in rows} == {"ran", "skipped"}, "a tick stopped at a gate is recorded too"
    for earlier, later in itertools.pairwise(ran()):
        assert earlier.finished_at_ms is not None and earlier.finished_at_ms <= later.started_at_ms
        # The last run is stored in whole seconds: the gate may count up to 1 s more.
        assert later.started_at_ms - earlier.started_at_ms >= (min_gap_s - 1) * 1000
    for row in rows:
        if row.outcome == "skipped":
            assert json.loads(row.gates_json)["decided_by"] in {"lock", "time"}, row.gates_json
    assert names.CONSOLIDATE in fleet.log("beat1") and names.CONSOLIDATE in fleet.log("beat2")


# ── LLM permits ──────────────────────────────────────────────────────────────


def test_llm_bound_jobs_hold_a_fleet_wide_permit(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat=FAST_BEAT,
        tree_uses_llm="true",
        llm_permits=1,
        llm_wait_s=0.2,
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker("w1", concurrency=2)
    fleet.worker("w2", concurrency=2)
    fleet.beat()
    ids = enqueue_and_publish(
        settings, [probe_job(f"llm{i}", sleep_always=True, sleep_s=0.4) for i in range(6)]
    )

    wait_until(
        lambda: all(job(db_url, i).status == "done" for i in ids), 90, "six LLM-bound jobs done", fleet
    )
    assert int(probes.get("probe:max-running") or 0) == 1
    assert {job(db_url, i).attempts for i in ids} == {1}, "waiting for a permit spent no attempt"


# ── bad input from a producer ────────────────────────────────────────────────


def test_bad_remote_enqueues_are_named_in_the_log_and_insert_nothing(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker()
    with client_app(settings) as app:
        for kwargs in (
            {"kind": "nope", "payload": {}},
            {"kind": "seal", "payload": {"level": 0}},
            {"kind": "seal", "payload": {"tree_id": "ok", "level": 0}},
        ):
            app.send_task(names.MEM_TREE_ENQUEUE, kwargs=kwargs, queue="default")

    wait_until(lambda: count_status(db_url, "done") == 1, 60, "the valid job done", fleet)
    wait_until(lambda: fleet.log("w1").count("enqueue rejected") == 2, 30, "two rejections logged", fleet)
    log = fleet.log("w1")
    assert "unknown job kind 'nope'" in log
    assert "'tree_id' must be a non-empty string" in log


# ── graceful shutdown ────────────────────────────────────────────────────────


def test_a_warm_shutdown_finishes_the_running_job(
    db_url: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker()
    [job_id] = enqueue_and_publish(settings, [probe_job("warm", sleep_attempts=1, sleep_s=3)])
    wait_until(lambda: runs(probes, "warm") == 1, 60, "the job started", fleet)
    fleet.stop("w1", timeout=60)
    row = job(db_url, job_id)
    assert (row.status, row.attempts, row.lease_token) == ("done", 1, None)


# ── RabbitMQ ─────────────────────────────────────────────────────────────────


def test_the_pipeline_runs_on_rabbitmq(
    fleet: Fleet, tmp_path: Path, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path}/rabbit.sqlite3"
    fleet.env = fleet_env(database_url=db_url, broker_url=RABBIT_URL, lock_redis_url=lock_url)
    settings = settings_from(fleet.env, monkeypatch)
    with client_app(settings) as app:
        try:
            app.control.purge()
        except OSError as exc:
            pytest.fail(
                f"RabbitMQ is not reachable at {RABBIT_URL}: {exc} — start it or set TEST_RABBITMQ_URL"
            )
    fleet.worker(concurrency=4)
    run_producer(RABBIT_URL, 300, "rabbit")
    wait_until(lambda: count_status(db_url, "done") == 300, 120, "300 jobs done through RabbitMQ", fleet)


# ── Flower ───────────────────────────────────────────────────────────────────


def test_flower_lists_the_workers_and_the_tasks_they_ran(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers send no task events by default; Flower turns them on while it watches."""
    fleet.env = fleet_env(
        database_url=f"sqlite:///{tmp_path}/flower.sqlite3", broker_url=broker_url, lock_redis_url=lock_url
    )
    settings = settings_from(fleet.env, monkeypatch)
    assert not settings.task_events
    fleet.env["FLOWER_UNAUTHENTICATED_API"] = "true"
    fleet.worker("w1")
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    fleet.flower(port)
    seen: dict[str, Any] = {}

    def listed() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=5) as reply:
                seen.update(json.load(reply))
        except OSError:
            return False
        return any(name.startswith("w1@") for name in seen)

    wait_until(listed, 60, "Flower lists worker w1", fleet)
    [(name, info)] = [(n, i) for n, i in seen.items() if n.startswith("w1@")]
    queues = {q["name"] for q in info.get("active_queues", [])}
    assert queues == {*names.QUEUES, names.CELERY}, f"{name} consumes {queues}"

    tasks: dict[str, Any] = {}
    sent: list[float] = []

    def ran() -> bool:
        # Events begin when Flower's request reaches the worker: a job a second until one shows.
        if not sent or time.monotonic() - sent[-1] > 1:
            sent.append(time.monotonic())
            enqueue_and_publish(settings, [seal_job(f"watched{len(sent)}", 0)])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as reply:
            tasks.update(json.load(reply))
        return any(
            t.get("name") == names.shadow(names.MEM_TREE_RUN, "seal") and t.get("state") == "SUCCESS"
            for t in tasks.values()
        )

    wait_until(ran, 60, "Flower shows a job's task that succeeded", fleet)


# ── batched drain ────────────────────────────────────────────────────────────


def test_a_batched_drain_runs_every_job_once(
    db_url: str, fleet: Fleet, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.env = fleet_env(
        database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, beat=FAST_BEAT, drain_batch=100
    )
    settings = settings_from(fleet.env, monkeypatch)
    chunks = [NewChunk(f"d{i}", "drained", f"src{i % 3}", f"Chunk {i} about Berlin.") for i in range(400)]
    TreeStore(get_engine(db_url)).add_chunks(chunks)
    enqueue_and_publish(settings, [extract_chunk_job(c.id) for c in chunks])
    broker = redis.Redis.from_url(broker_url)
    assert sum(broker.llen(k) for k in broker.scan_iter("bulk*")) == 4, "one drain message per 100 jobs"

    fleet.worker(concurrency=2)
    fleet.beat()
    wait_until(
        lambda: count_status(db_url, "done", kind="extract_chunk") == 400, 120, "400 extracts drained", fleet
    )
    wait_until(
        lambda: count_status(db_url, "ready", "running") == 0,
        120,
        "their follow-ups (appends, seals) drained",
        fleet,
    )
    assert count_status(db_url, "done", kind="append_buffer") >= 400
    with get_engine(db_url).connect() as conn:
        attempts = conn.execute(select(t.c.attempts).distinct()).scalars().all()
    assert attempts == [1], "no job ran twice"
    assert "memtasks.mem_tree.drain" in fleet.log("w1")


# ── a database outage ────────────────────────────────────────────────────────


def test_a_remote_enqueue_waits_out_a_database_outage(
    fleet: Fleet, tmp_path: Path, broker_url: str, lock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "volume"
    blocker.write_text("not a directory yet: the database cannot be opened")
    db_url = f"sqlite:///{blocker}/memtasks.sqlite3"
    fleet.env = fleet_env(
        database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url, breaker_cooldown_s=1
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker()
    with client_app(settings) as app:
        app.send_task(
            names.MEM_TREE_ENQUEUE,
            kwargs={"kind": "seal", "payload": {"tree_id": "t", "level": 0}},
            queue="default",
        )
    wait_until(
        lambda: fleet.log("w1").count("database unavailable") >= 2, 60, "the enqueue is retried", fleet
    )

    blocker.unlink()  # the volume comes back
    wait_until(
        lambda: blocker.is_dir() and count_status(db_url, "done") == 1, 90, "the job enqueued and run", fleet
    )
