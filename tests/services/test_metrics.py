"""The Prometheus exporter, scraped over HTTP; its gauges match the database."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from memtasks.domain.clock import FrozenClock
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.metrics import LoggerCollector, QueueCollector
from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.tables import mem_tree_jobs as t

pytestmark = pytest.mark.integration


@pytest.fixture
def scrape() -> Iterator[object]:
    servers = []

    def serve(*collectors: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        registry = CollectorRegistry()
        for collector in collectors:
            registry.register(collector)  # type: ignore[arg-type]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        servers.append((server, thread))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_gauges_match_the_database(engine: Engine, jobs: MemTreeJobs, clock: FrozenClock, scrape) -> None:  # type: ignore[no-untyped-def]
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}) for i in range(3)])
    jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"c{i}"}) for i in range(4)])
    clock.advance(30_000)
    running = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    failed = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    assert running and failed
    jobs.settle_failed(failed.lease, "bad", FailureClass.UNRECOVERABLE)
    clock.advance(jobs.config.lease_ms + 1)  # the running job's lease has expired
    DatabaseSink(engine, clock=clock).write([RetrievalFailure.new("no_hit", "vector", "q").stamped(clock())])

    samples = scrape(QueueCollector(engine, clock=clock))

    with engine.connect() as conn:
        truth = {
            (kind, status): count
            for kind, status, count in conn.execute(
                select(t.c.kind, t.c.status, func.count()).group_by(t.c.kind, t.c.status)
            )
        }
    assert truth == {
        ("seal", "ready"): 3,
        ("extract_chunk", "ready"): 2,
        ("extract_chunk", "running"): 1,
        ("extract_chunk", "failed"): 1,
    }
    for (kind, status), count in truth.items():
        queue = "critical" if kind == "seal" else "bulk"
        key = ("memtasks_jobs", (("kind", kind), ("queue", queue), ("status", status)))
        assert samples[key] == count
    assert samples[("memtasks_jobs", (("kind", "seal"), ("queue", "critical"), ("status", "done")))] == 0
    assert samples[("memtasks_up", ())] == 1
    age = samples[("memtasks_oldest_ready_age_seconds", (("kind", "seal"), ("queue", "critical")))]
    assert age == pytest.approx((30_000 + jobs.config.lease_ms + 1) / 1000)
    assert samples[("memtasks_expired_leases", (("kind", "extract_chunk"),))] == 1
    assert (
        samples[("memtasks_failed_jobs", (("failure_class", "unrecoverable"), ("kind", "extract_chunk")))]
        == 1
    )
    assert samples[("memtasks_retrieval_failures", ())] == 1


def test_an_unreadable_database_reports_down(tmp_path, scrape) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    broken = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.sqlite3")
    samples = scrape(QueueCollector(broken))
    assert samples == {("memtasks_up", ()): 0.0}
    broken.dispose()


def test_the_logger_counters(engine: Engine, scrape) -> None:  # type: ignore[no-untyped-def]
    logger = RetrievalFailureLogger(DatabaseSink(engine), capacity=4, batch_size=2, register_atexit=False)
    try:
        for i in range(3):
            logger.log(RetrievalFailure.new("timeout", "graph", f"q{i}"))
        assert logger.shutdown(timeout=10)
        samples = scrape(LoggerCollector(logger))
    finally:
        logger.shutdown(timeout=1)
    stats = logger.stats()
    assert samples[("memtasks_retrieval_failures_logged_total", ())] == stats.logged == 3
    assert samples[("memtasks_retrieval_failures_written_total", ())] == stats.written
    assert samples[("memtasks_retrieval_failures_dropped_total", ())] == stats.dropped
    assert stats.written + stats.dropped + stats.lost == 3
