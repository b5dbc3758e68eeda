"""A producer with only the broker (``memtasks.client``) against real ``celery worker``
processes, through Redis and RabbitMQ; and what Flower shows of the jobs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from memtasks.client import MemtasksClient
from memtasks.domain.ids import check_mem_tree_job_id
from memtasks.domain.jobs import JobStatus
from memtasks.storage.engine import get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.tables import mem_tree_jobs as t
from memtasks.worker import names
from memtasks.worker.conf import publisher_app
from tests.pipeline.conftest import RABBIT_URL
from tests.pipeline.fleet import ROOT, Fleet, fleet_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 1_000
PRODUCER = ROOT / "tests" / "pipeline" / "_client_producer.py"


@pytest.fixture
def own_redis(redis_url: str) -> Iterator[tuple[str, str]]:
    """Broker and lock databases of this module's own (others' pipeline tests flush theirs)."""
    base = redis_url.rsplit("/", 1)[0]
    urls = (f"{base}/9", f"{base}/10")
    for url in urls:
        redis.Redis.from_url(url).flushdb()
    yield urls
    for url in urls:
        redis.Redis.from_url(url).flushdb()


def produce(broker_url: str, prefix: str, tmp: Path) -> list[tuple[str, str]]:
    """Run the producer (a process of its own); the (kind, id) pairs it knew when it sent."""
    ids_file = tmp / f"{prefix}.ids"
    done = subprocess.run(
        [sys.executable, str(PRODUCER), broker_url, str(JOBS), prefix, str(ids_file)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    pairs = [tuple(line.split()) for line in ids_file.read_text().splitlines()]
    return [(kind, job_id) for kind, job_id in pairs]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seen_done_through_the_status_endpoint(env: dict[str, str], pairs: list[tuple[str, str]]) -> None:
    """Every id the producer holds, followed as a producer follows it: ``client.wait`` against
    the ``memtasks metrics`` server's ``GET /jobs/<id>`` (no database access here)."""
    port = free_port()
    exporter = subprocess.Popen(
        [str(Path(sys.executable).parent / "memtasks"), "metrics", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MemtasksClient("redis://127.0.0.1:6379/15", status_url=f"http://127.0.0.1:{port}")
    try:

        def serving() -> bool:
            assert exporter.poll() is None, exporter.stderr.read() if exporter.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(serving, 30, "the status endpoint answers")
        seen = client.wait([job_id for _, job_id in pairs], timeout=60, poll_s=0.2)
    finally:
        client.close()
        exporter.terminate()
        exporter.wait(timeout=30)
        if exporter.stderr:
            exporter.stderr.close()
    assert {job_id: view["status"] for job_id, view in seen.items()} == {i: "done" for _, i in pairs}
    assert {(view["kind"], job_id) for job_id, view in seen.items()} == set(pairs)


def every_id_done(fleet: Fleet, db_url: str, pairs: list[tuple[str, str]], plain_tree: str) -> None:
    queue = MemTreeJobs(get_engine(db_url))
    ids = [job_id for _, job_id in pairs]
    statuses: dict[str, Any] = {}

    def done() -> bool:
        statuses.clear()
        statuses.update({row.id: row for row in queue.admin.get_many(ids)})
        return len(statuses) == len(ids) and all(r.status is JobStatus.DONE for r in statuses.values())

    wait_until(done, 50, f"each of the {len(ids)} ids the producer holds is done", fleet)
    assert {(statuses[i].kind, i) for _, i in pairs} == set(pairs), "each id stored with its kind"

    def plain_done() -> bool:
        with get_engine(db_url).connect() as conn:
            found = conn.execute(select(t.c.status).where(t.c.payload_json.contains(f'"{plain_tree}"'))).all()
        return [r.status for r in found] == ["done"]

    wait_until(plain_done, 30, "the send_task without queue= is run", fleet)
    seen_done_through_the_status_endpoint(fleet.env, pairs)


def test_a_broker_only_producer_through_redis_then_rabbitmq(
    pg_schema: str, fleet: Fleet, tmp_path: Path, own_redis: tuple[str, str]
) -> None:
    broker_url, lock_url = own_redis
    db_url = pg_schema
    # Through Redis: every id is known before any worker runs (none runs yet).
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    pairs = produce(broker_url, "r", tmp_path)
    assert len(pairs) == JOBS and len({i for _, i in pairs}) == JOBS
    for _, job_id in pairs:
        check_mem_tree_job_id(job_id)
    assert {k for k, _ in pairs} == {"seal", "reembed_backfill", "flush_stale"}
    assert redis.Redis.from_url(broker_url).llen(names.CELERY) == 1, "the plain send_task is in `celery`"
    fleet.worker("w1", queues="critical,default,bulk", concurrency=4)
    every_id_done(fleet, db_url, pairs, "r-plain")
    fleet.stop_all()

    # Through RabbitMQ: queues declared alike by workers, the client and a plain producer.
    app = publisher_app(RABBIT_URL)
    try:
        app.control.purge()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {RABBIT_URL}: {exc} — start it or set TEST_RABBITMQ_URL")
    finally:
        app.close()
    fleet.env = fleet_env(database_url=db_url, broker_url=RABBIT_URL, lock_redis_url=lock_url)
    fleet.worker("w2", queues="critical,default,bulk", concurrency=4)
    pairs = produce(RABBIT_URL, "q", tmp_path)
    every_id_done(fleet, db_url, pairs, "q-plain")
    assert "PRECONDITION_FAILED" not in fleet.log("w2")


def test_flower_shows_the_kind_in_the_name_and_a_failed_job_as_failure_once(
    fleet: Fleet, tmp_path: Path, own_redis: tuple[str, str]
) -> None:
    broker_url, lock_url = own_redis
    db_url = f"sqlite:///{tmp_path}/flower.sqlite3"
    fleet.env = fleet_env(database_url=db_url, broker_url=broker_url, lock_redis_url=lock_url)
    fleet.env["FLOWER_UNAUTHENTICATED_API"] = "true"
    fleet.worker("w1", queues="critical,default,bulk", concurrency=2)
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    fleet.flower(port)
    client = MemtasksClient(broker_url)
    tasks: dict[str, Any] = {}
    sent: list[float] = []
    failing: dict[str, str] = {}

    def shown() -> bool:
        # Events begin when Flower's request reaches the worker: a pair of jobs a second until both show.
        if not sent or time.monotonic() - sent[-1] > 1:
            sent.append(time.monotonic())
            probe = f"fail-{uuid.uuid4().hex[:8]}"
            failing[client.enqueue("reembed_backfill", {"probe": probe, "fail_times": 9}, max_attempts=1)] = (
                probe
            )
            client.seal(f"watched{len(sent)}", 0)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5) as reply:
                tasks.update(json.load(reply))
        except OSError:
            return False
        states = {(t.get("name"), t.get("state")) for t in tasks.values()}
        return ("memtasks.mem_tree.run[seal]", "SUCCESS") in states and any(
            uuid_ in failing and t.get("state") == "FAILURE" for uuid_, t in tasks.items()
        )

    try:
        wait_until(shown, 60, "Flower shows a sealed job and a failed one", fleet)
    finally:
        client.close()
    [(job_id, task)] = [(u, t) for u, t in tasks.items() if u in failing and t.get("state") == "FAILURE"][:1]
    assert task["name"] == "memtasks.mem_tree.run[reembed_backfill]"
    assert "JobFailed" in task["exception"] and job_id in task["exception"]
    assert job_id in task["args"] and "reembed_backfill" in task["kwargs"]
    row = MemTreeJobs(get_engine(db_url)).get(job_id)
    assert row is not None and row.status is JobStatus.FAILED and row.attempts == 1
    probes = redis.Redis.from_url(lock_url)
    assert int(probes.get(f"probe:{failing[job_id]}:runs") or 0) == 1, (
        "run once: not redelivered, not retried"
    )
    log = fleet.log("w1")
    assert (
        "raised expected: JobFailed" in log
        and "Traceback" not in log.split("raised expected: JobFailed")[1][:300]
    )
    assert not any(t.get("state") == "RETRY" for t in tasks.values())
