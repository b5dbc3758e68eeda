"""Task wiring and routing, with Celery's in-process test worker: names, queues, shadow names,
the ``celery`` queue fallback, the retry policy of the only-copy tasks, and a failed job seen
as a failure.

pytest-celery registers Celery's own fixtures (``celery.contrib.pytest``: ``celery_app``,
``celery_config`` …), but its 1.x ``celery_worker`` is a worker in a docker container; the
in-process worker (``celery.contrib.testing.worker.start_worker``, a thread with the ``solo``
pool) is started here under that name instead, on memtasks' own app and the in-memory broker.

The real-process fleets (tests/pipeline) stay the proof under real brokers; these are fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController

from memtasks.client import MemtasksClient
from memtasks.config import load_settings
from memtasks.domain.jobs import JobStatus
from memtasks.services.runtime import open_runtime
from memtasks.worker import names
from memtasks.worker.app import also_consume_celery, create_app
from memtasks.worker.tasks import RETRY_CAP_S, UNREACHABLE, JobFailed
from tests.helpers import wait_for

pytestmark = pytest.mark.redis

ONLY_COPY = (names.MEM_TREE_ENQUEUE, names.DECAY_ENQUEUE, names.RECORD_RETRIEVAL_FAILURES)
RUNS = (names.MEM_TREE_RUN, names.DECAY_RUN)


@pytest.fixture
def env(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    lock = redis_url.rsplit("/", 1)[0] + "/14"
    redis.Redis.from_url(lock).flushdb()
    values = {
        "MEMTASKS_DATABASE_URL": f"sqlite:///{tmp_path}/wiring.sqlite3",
        "MEMTASKS_BROKER_URL": "memory://",
        "MEMTASKS_LOCK_REDIS_URL": lock,
        "MEMTASKS_HANDLERS": "tests.pipeline.plugins:build_registry",
        "MEMTASKS_DRAIN_BATCH": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def celery_app(env: dict[str, str]) -> Iterator[Celery]:
    """memtasks' own app (overrides celery.contrib.pytest's test app)."""
    app = create_app(load_settings())
    app.set_current()
    yield app
    app.close()


@pytest.fixture
def celery_worker(celery_app: Celery) -> Iterator[WorkController]:
    """An in-process worker. No result backend: no ping check (it waits on a result).
    ``celery worker`` adds ``celery`` to a worker reading ``default`` after ``-Q``; this one
    names it."""
    queues = [names.DEFAULT, names.CELERY, names.BULK, names.CRITICAL]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=queues) as worker:
        yield worker


def test_every_task_is_registered_with_its_policy(celery_app: Celery) -> None:
    for name in (*ONLY_COPY, *RUNS, names.MEM_TREE_DRAIN, *names.SWEEPS.values()):
        assert name in celery_app.tasks, name
    for name in ONLY_COPY:
        task = celery_app.tasks[name]
        assert tuple(task.autoretry_for) == UNREACHABLE, name
        assert task.retry_backoff is True and task.retry_backoff_max == RETRY_CAP_S == 60
        assert task.retry_jitter is True and task.max_retries is None
    for name in RUNS:
        task = celery_app.tasks[name]
        assert task.throws == (JobFailed,) and not getattr(task, "autoretry_for", ())
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_acks_on_failure_or_timeout


def test_queues_are_declared_as_workers_and_plain_producers_declare_them(celery_app: Celery) -> None:
    queues = {q.name: q for q in celery_app.conf.task_queues}
    assert set(queues) == {*names.QUEUES, names.CELERY}
    for name in names.QUEUES:
        assert queues[name].queue_arguments == {"x-max-priority": 9}, name
    assert not queues[names.CELERY].queue_arguments, "celery is declared as a plain producer declares it"
    assert queues[names.CELERY].exchange.name == "celery" and queues[names.CELERY].routing_key == "celery"
    assert celery_app.conf.task_queue_max_priority is None, "it would add x-max-priority to celery"
    assert not celery_app.amqp.queues[names.CELERY].queue_arguments


@pytest.mark.parametrize(
    ("selected", "added"),
    [(["critical"], False), (["default", "bulk"], True), (["default", "celery"], False)],
)
def test_a_worker_reading_default_also_reads_celery(
    celery_app: Celery, selected: list[str], added: bool
) -> None:
    queues = celery_app.amqp.queues
    queues.select(selected)
    assert also_consume_celery(queues) is added
    assert (names.CELERY in queues.consume_from) is ("default" in selected)


def test_client_ids_shadow_names_and_the_celery_queue_in_a_worker(
    celery_app: Celery, celery_worker: Any, env: dict[str, str]
) -> None:
    received: list[tuple[str, str]] = []

    def on_received(request: Any = None, **_: object) -> None:
        received.append((request.id, request.name))

    signals.task_received.connect(on_received, weak=False)
    try:
        client = MemtasksClient("memory://", app=celery_app)
        job_id = client.enqueue("reembed_backfill", {"probe": "ok"})
        other = client.seal("t1", 0)
        plain = Celery("agent", broker="memory://", set_as_current=False)  # knows no memtasks queue
        plain.conf.task_serializer = "json"
        plain.send_task(
            names.MEM_TREE_ENQUEUE, kwargs={"kind": "seal", "payload": {"tree_id": "t2", "level": 0}}
        )
        runtime = open_runtime(load_settings())

        def settled() -> bool:
            rows = {r.id: r for r in runtime.jobs.admin.get_many([job_id, other])}
            every = runtime.jobs.admin.count_by_state()
            return (
                len(rows) == 2
                and all(r.status.terminal for r in rows.values())
                and every[JobStatus.DONE] == 3
            )

        wait_for(settled, timeout=30)
        assert {r.status for r in runtime.jobs.admin.get_many([job_id, other])} == {JobStatus.DONE}
    finally:
        signals.task_received.disconnect(on_received)
    names_seen = {name for _, name in received}
    assert "memtasks.mem_tree.enqueue[reembed_backfill]" in names_seen
    assert (job_id, "memtasks.mem_tree.run[reembed_backfill]") in received, "the run's task id is the job id"
    assert (other, "memtasks.mem_tree.run[seal]") in received


def test_a_failed_job_fails_in_celery_once_and_is_not_redelivered(
    celery_app: Celery, celery_worker: Any, env: dict[str, str]
) -> None:
    failures: list[tuple[str, BaseException]] = []

    def on_failure(task_id: str = "", exception: BaseException | None = None, **_: object) -> None:
        assert exception is not None
        failures.append((task_id, exception))

    signals.task_failure.connect(on_failure, weak=False)
    try:
        probe = f"fail-{uuid.uuid4().hex[:6]}"
        job_id = MemtasksClient("memory://", app=celery_app).enqueue(
            "reembed_backfill", {"probe": probe, "fail_times": 9}, max_attempts=1
        )
        runtime = open_runtime(load_settings())

        def failed() -> bool:
            row = runtime.jobs.get(job_id)
            return row is not None and row.status is JobStatus.FAILED and bool(failures)

        wait_for(failed, timeout=30)
        # A second message for the same job would find the row failed and do nothing; the
        # first is acknowledged (acks_on_failure), never retried by Celery.
        probes = redis.Redis.from_url(env["MEMTASKS_LOCK_REDIS_URL"])
        wait_for(
            lambda: celery_worker.consumer.qos.value == celery_worker.consumer.initial_prefetch_count,
            timeout=10,
        )
    finally:
        signals.task_failure.disconnect(on_failure)
    assert [task_id for task_id, _ in failures] == [job_id]
    assert isinstance(failures[0][1], JobFailed)
    assert f"job {job_id} (reembed_backfill) failed at attempt 1" in str(failures[0][1])
    assert int(probes.get(f"probe:{probe}:runs") or 0) == 1
    row = runtime.jobs.get(job_id)
    assert row is not None and row.attempts == 1
