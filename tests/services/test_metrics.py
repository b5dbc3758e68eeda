"""The Prometheus exporter and the job status endpoint, over HTTP, against real databases.

Its gauges match the tables; a dry run never counts as a consolidation; the logger's
counters are all exported; the tables are read once per interval whatever the number of
scrapes (statements counted, not timed); the histograms put jobs of known times in the
right buckets; ``/jobs/<id>`` and ``/healthz`` answer as the contract says.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, event, func, insert, select

from memtasks.domain.clock import HOUR_MS, FrozenClock
from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.domain.gates import ConsolidationConfig
from memtasks.domain.jobs import FailureClass, JobKind, NewJob
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.locks import RedisLockGate, redis_client
from memtasks.metrics import LoggerCollector, QueueCollector, SnapshotCache
from memtasks.metrics.server import exporter_app, make_app, serve
from memtasks.services.consolidation import Consolidator
from memtasks.services.job_timings import BUCKETS_S, JobTimings
from memtasks.services.job_view import JobLookup
from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
from memtasks.services.status import status_report
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.tables import decay_jobs, mem_tree_jobs
from memtasks.storage.tables import mem_tree_jobs as t
from tests.helpers import all_at_once, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Ticker:
    """A monotonic clock for the snapshot cache that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Exporter:
    """An exporter on a free port: its base URL, its snapshot cache and a GET helper."""

    def __init__(self, app: Any, cache: SnapshotCache) -> None:
        self.cache = cache
        self.server, self.thread = serve(app, "127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as reply:
                return reply.status, reply.headers.get("Content-Type", ""), reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()

    def scrape(self) -> Samples:
        status, _, body = self.get("/metrics")
        assert status == 200
        return parse(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def exporter() -> Iterator[Callable[..., Exporter]]:
    started: list[Exporter] = []

    def start(engine: Engine, clock: Any = None, *, interval_s: float = 3600.0, **kw: Any) -> Exporter:
        cache = SnapshotCache(
            engine,
            interval_s=interval_s,
            clock=clock or FrozenClock(),
            monotonic=kw.pop("monotonic", Ticker()),
            timings=kw.pop("timings", None),
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(QueueCollector(cache, **kw))
        started.append(Exporter(make_app(registry, cache, JobLookup(engine)), cache))
        return started[-1]

    yield start
    for running in started:
        running.close()


# ── the gauges ──────────────────────────────────────────────────────────────


def test_the_gauges_match_the_database(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}) for i in range(3)])
    jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"c{i}"}) for i in range(4)])
    clock.advance(30_000)
    running = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    failed = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    assert running and failed
    jobs.settle_failed(failed.lease, "bad", FailureClass.UNRECOVERABLE)
    clock.advance(jobs.config.lease_ms + 1)  # the running job's lease has expired
    DatabaseSink(engine, clock=clock).write([RetrievalFailure.new("no_hit", "vector", "q").stamped(clock())])

    samples = exporter(engine, clock).scrape()

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
    assert samples[("memtasks_decay_jobs", (("state", "pending"),))] == 0, "every state, 0 when none"
    assert samples[("memtasks_metrics_reads_total", ())] == 1


def test_an_unreadable_database_reports_down_and_keeps_no_stale_gauge(
    tmp_path: Any, exporter: Callable[..., Exporter]
) -> None:
    broken = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.sqlite3")
    samples = exporter(broken).scrape()
    broken.dispose()
    assert samples[("memtasks_up", ())] == 0
    assert not [name for name, _ in samples if name.startswith(("memtasks_jobs", "memtasks_decay"))]
    assert ("memtasks_metrics_snapshot_age_seconds", ()) not in samples, "no read has succeeded"
    assert samples[("memtasks_metrics_reads_total", ())] == 1


# ── dry runs ────────────────────────────────────────────────────────────────


@pytest.mark.redis
def test_a_dry_run_leaves_the_ran_count_and_the_last_run_timestamp_unchanged(
    engine: Engine, clock: FrozenClock, redis_url: str, key_prefix: str, exporter: Callable[..., Exporter]
) -> None:
    client = redis_client(redis_url)
    gate = RedisLockGate(client, f"{key_prefix}consolidate", ttl_s=30)
    consolidator = Consolidator(engine, gate, ConsolidationConfig(min_hours=1.0, min_sessions=0), clock)
    ticker = Ticker()
    served = exporter(engine, clock, interval_s=15.0, monotonic=ticker)
    real = consolidator.prune("manual")
    before = served.scrape()
    assert before[("memtasks_consolidation_runs", (("outcome", "ran"),))] == 1
    assert before[("memtasks_last_consolidation_timestamp_seconds", ())] == real.started_at_ms / 1000

    clock.advance(2 * HOUR_MS)
    dry = consolidator.dry_run("manual")
    ticker.now += 15.0  # the next scrape reads the tables again
    after = served.scrape()
    client.close()

    assert dry.dry_run and after[("memtasks_metrics_reads_total", ())] == 2
    assert after[("memtasks_consolidation_runs", (("outcome", "ran"),))] == 1
    assert after[("memtasks_consolidation_runs", (("outcome", "dry_run"),))] == 1
    assert after[("memtasks_last_consolidation_timestamp_seconds", ())] == real.started_at_ms / 1000
    last = status_report(engine, clock).last_consolidation
    assert last is not None and last.id == real.run_id, "status shows the real run"
    gates = consolidator.maybe_run("schedule").gates
    assert gates[1].gate.value == "time" and gates[1].passed, "the dry run did not postpone the real one"


def test_a_dry_run_alone_is_no_last_consolidation(
    engine: Engine, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    unused_gate: Any = None  # a dry run takes no lock
    Consolidator(engine, unused_gate, ConsolidationConfig(), clock).dry_run()
    samples = exporter(engine, clock).scrape()
    assert samples[("memtasks_consolidation_runs", (("outcome", "dry_run"),))] == 1
    assert samples[("memtasks_consolidation_runs", (("outcome", "ran"),))] == 0
    assert ("memtasks_last_consolidation_timestamp_seconds", ()) not in samples
    assert status_report(engine, clock).last_consolidation is None


# ── the logger's counters ───────────────────────────────────────────────────


class FailingSink:
    def write(self, batch: Any) -> None:
        raise OSError("the sink is down")


def _logger_samples(logger: RetrievalFailureLogger) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoggerCollector(logger))
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


def test_every_logger_counter_is_exported_with_its_meaning(engine: Engine) -> None:
    written = RetrievalFailureLogger(DatabaseSink(engine), capacity=4, batch_size=2, register_atexit=False)
    lost = RetrievalFailureLogger(
        FailingSink(),
        capacity=2,
        batch_size=2,
        max_batch_retries=1,
        retry_backoff_s=0.001,
        register_atexit=False,
    )
    try:
        for i in range(3):
            written.log(RetrievalFailure.new("timeout", "graph", f"q{i}"))
        for i in range(2):  # the sink fails them: lost after the retry
            lost.log(RetrievalFailure.new("timeout", "graph", f"q{i}"))
        wait_for(lambda: lost.stats().lost == 2)
        assert written.shutdown(timeout=10) and lost.shutdown(timeout=10)
        assert not lost.log(RetrievalFailure.new("timeout", "graph", "late")), "after shutdown: dropped"
        for logger in (written, lost):
            samples = _logger_samples(logger)
            stats = logger.stats()
            for field in ("logged", "written", "dropped", "lost", "batches", "retries"):
                assert samples[(f"memtasks_retrieval_failures_{field}_total", ())] == getattr(stats, field)
            assert samples[("memtasks_retrieval_failures_pending", ())] == stats.pending == 0
    finally:
        written.shutdown(timeout=1)
        lost.shutdown(timeout=1)
    assert (written.stats().logged, written.stats().written, written.stats().lost) == (3, 3, 0)
    assert (lost.stats().logged, lost.stats().written, lost.stats().dropped, lost.stats().lost) == (
        3,
        0,
        1,
        2,
    )
    assert lost.stats().retries >= 1


# ── one read per interval ───────────────────────────────────────────────────


class Statements:
    """Counts the statements an engine executes."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.engine = engine
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_scrapes_and_probes_within_an_interval_read_the_tables_once(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": f"t{i}", "level": 0}) for i in range(3)])
    ticker = Ticker()
    served = exporter(engine, clock, interval_s=15.0, monotonic=ticker)
    statements = Statements(engine)
    try:
        served.scrape()
        one_read = statements.count
        assert one_read > 0
        for _ in range(20):
            served.scrape()
            assert served.get("/healthz")[0] == 200
        all_at_once(8, served.scrape)  # concurrent scrapes never read in parallel
        assert statements.count == one_read, "every scrape and probe answered from the snapshot"
        ticker.now += 14.9
        served.scrape()
        assert statements.count == one_read
        ticker.now += 0.1  # one interval after the read began
        all_at_once(8, served.scrape)
        assert statements.count == 2 * one_read, "the next interval: one read, however many scrapes"
    finally:
        statements.close()
    assert served.cache.reads == 2
    age = served.scrape()[("memtasks_metrics_snapshot_age_seconds", ())]
    assert age == 0.0, "read at the ticker's current time"


# ── the histograms ──────────────────────────────────────────────────────────


def _tree_row(
    job_id: str, kind: str, status: str, created: int, due: int, started: int, done: int
) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": kind,
        "priority": 1,
        "payload_json": "{}",
        "status": status,
        "attempts": 1,
        "max_attempts": 5,
        "created_at_ms": created,
        "available_at_ms": due,
        "started_at_ms": started,
        "completed_at_ms": done,
        "failure_class": "unrecoverable" if status == "failed" else None,
    }


def _decay_row(job_id: str, method: str, created: int, due: int, started: int, done: int) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": "candidate_compression",
        "source_ids_json": '["mem_a", "mem_b"]',
        "summary_method": method,
        "state": "completed",
        "scheduled_for_ms": due,
        "created_at_ms": created,
        "created_by": "agent",
        "updated_at_ms": done,
        "started_at_ms": started,
        "completed_at_ms": done,
        "attempts": 1,
        "max_attempts": 3,
    }


def bucket(samples: Samples, name: str, queue: str, kind: str, le: str) -> float:
    return samples[(f"{name}_bucket", (("kind", kind), ("le", le), ("queue", queue)))]


def test_the_histograms_count_finished_jobs_in_the_right_buckets(
    engine: Engine, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    t0 = clock.now_ms - 3 * HOUR_MS
    seal = [  # (created, due, started, completed): run 3 ms / 2 s / 90 s, wait 0 / 40 ms / 20 min
        (t0, t0, t0, t0 + 3),
        (t0, t0 + 10, t0 + 50, t0 + 2_050),
        (t0, t0 + 60_000, t0 + 60_000 + 1_200_000, t0 + 60_000 + 1_200_000 + 90_000),
    ]
    rows = [_tree_row(f"job:s{i}", "seal", "done", *times) for i, times in enumerate(seal)]
    rows.append(_tree_row("job:f", "extract_chunk", "failed", t0, t0, t0 + 1_000, t0 + 6_000))  # run 5 s
    rows.append(_tree_row("job:c", "extract_chunk", "cancelled", t0, t0, t0, t0 + 1))  # never ran
    rows[-1]["failure_class"] = None
    with engine.begin() as conn:
        conn.execute(insert(mem_tree_jobs), rows)
        conn.execute(
            insert(decay_jobs),
            [
                _decay_row("dj_a", "deterministic_concatenate", t0, t0 + 5_000, t0 + 4_000, t0 + 4_100),
                _decay_row("dj_b", "llm_summary", t0, t0, t0 + 300, t0 + 7_200_000),
            ],
        )

    ticker = Ticker()
    timings = JobTimings(engine, since_ms=0)
    served = exporter(engine, clock, interval_s=15.0, monotonic=ticker, timings=timings)
    samples = served.scrape()

    run, wait = "memtasks_job_run_seconds", "memtasks_job_wait_seconds"
    assert [
        bucket(samples, run, "critical", "seal", le) for le in ("0.005", "1.0", "2.5", "60.0", "120.0")
    ] == [
        1,
        1,
        2,
        2,
        3,
    ]
    assert samples[(f"{run}_count", (("kind", "seal"), ("queue", "critical")))] == 3
    assert samples[(f"{run}_sum", (("kind", "seal"), ("queue", "critical")))] == pytest.approx(92.003)
    assert [bucket(samples, wait, "critical", "seal", le) for le in ("0.005", "0.05", "600.0", "1800.0")] == [
        1,
        2,
        2,
        3,
    ]
    assert bucket(samples, run, "bulk", "extract_chunk", "5.0") == 1, "a failed job ran too; 5 s is in le=5"
    assert bucket(samples, run, "bulk", "extract_chunk", "2.5") == 0
    assert samples[(f"{run}_count", (("kind", "extract_chunk"), ("queue", "bulk")))] == 1, (
        "cancelled: not counted"
    )
    assert bucket(samples, wait, "default", "candidate_compression", "0.005") == 1, "started before due: 0"
    assert bucket(samples, run, "llm", "candidate_compression", "7200.0") == 1
    assert bucket(samples, run, "llm", "candidate_compression", "3600.0") == 0
    assert (
        len([k for k in samples if k[0] == f"{run}_bucket" and k[1][0] == ("kind", "seal")])
        == len(BUCKETS_S) + 1
    )

    # A job finishing later is added once; the ones already counted are not read again.
    late = clock.now_ms - 20_000
    with engine.begin() as conn:
        conn.execute(
            insert(mem_tree_jobs), [_tree_row("job:late", "seal", "done", late, late, late, late + 1)]
        )
    assert timings.advance(clock.now_ms) == 1
    ticker.now += 15.0
    assert served.scrape()[(f"{run}_count", (("kind", "seal"), ("queue", "critical")))] == 4


def test_the_histograms_start_at_the_exporter_and_wait_out_the_grace(
    engine: Engine, clock: FrozenClock
) -> None:
    now = clock.now_ms
    with engine.begin() as conn:
        conn.execute(
            insert(mem_tree_jobs),
            [_tree_row("job:old", "seal", "done", now - 99, now - 99, now - 90, now - 50_000)],
        )
    timings = JobTimings(engine, grace_ms=10_000)
    assert timings.advance(now) == 0, "the first read sets the watermark: earlier jobs are history"
    with engine.begin() as conn:
        conn.execute(
            insert(mem_tree_jobs), [_tree_row("job:new", "seal", "done", now, now, now + 1, now + 2)]
        )
    assert timings.advance(now + 5_000) == 0, "not yet grace_ms old"
    assert timings.advance(now + 10_002) == 1
    assert timings.advance(now + 60_000) == 0, "counted once"


# ── /jobs/<id> and /healthz ─────────────────────────────────────────────────


def test_a_job_by_id_for_both_tables_and_an_unknown_or_malformed_id(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0}))
    assert job_id is not None
    claimed = jobs.claim(job_id)
    assert claimed is not None
    jobs.settle_failed(claimed.lease, "db at postgresql://u:hunter2@db/x down", FailureClass.UNRECOVERABLE)
    decay_id = DecayJobs(engine, clock=clock).enqueue(
        DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_a", "mem_b")), created_by="agent"
    )
    served = exporter(engine, clock)

    status, kind, body = served.get("/jobs/" + urllib.parse.quote(job_id, safe=""))
    tree = json.loads(body)
    assert (status, kind) == (200, "application/json")
    assert (tree["id"], tree["table"], tree["kind"], tree["status"], tree["attempts"]) == (
        job_id,
        "mem_tree",
        "seal",
        "failed",
        1,
    )
    assert "hunter2" not in body and tree["error"].startswith("db at postgresql://u:")
    assert tree["created_at"].endswith("Z") and tree["completed_at"] is not None

    status, _, body = served.get(f"/jobs/{decay_id}")
    decay = json.loads(body)
    assert status == 200
    assert (decay["id"], decay["table"], decay["status"], decay["error"], decay["started_at"]) == (
        decay_id,
        "decay",
        "pending",
        None,
        None,
    )
    assert decay["kind"] == "candidate_compression"

    status, _, body = served.get("/jobs/" + urllib.parse.quote("job:00000000-0000-0000-0000-000000000000"))
    assert status == 404 and json.loads(body) == {"error": "no job job:00000000-0000-0000-0000-000000000000"}
    assert served.get("/jobs/dj_nope")[0] == 404
    for bad in ("/jobs/", "/jobs", "/jobs/a/b", "/jobs/%FF", "/jobs/%00", "/jobs/" + "x" * 300):
        status, _, body = served.get(bad)
        assert status == 400 and "malformed path" in json.loads(body)["error"], bad
    assert served.get("/nowhere")[0] == 404


def test_healthz_answers_200_when_readable_and_503_when_not(
    engine: Engine, clock: FrozenClock, exporter: Callable[..., Exporter]
) -> None:
    status, kind, body = exporter(engine, clock).get("/healthz")
    assert (status, kind, json.loads(body)) == (200, "application/json", {"ok": True})

    secret = "s3cr3t-pw"
    down = create_engine(
        f"postgresql+psycopg://u:{secret}@127.0.0.1:1/db", connect_args={"connect_timeout": 2}
    )
    served = exporter(down)
    status, _, body = served.get("/healthz")
    reply = json.loads(body)
    assert status == 503 and reply["ok"] is False and "OperationalError" in reply["error"]
    assert secret not in body
    status, _, body = served.get("/jobs/job%3Ax")
    assert status == 503 and secret not in body and "Traceback" not in body
    down.dispose()


def test_the_app_of_memtasks_metrics_serves_all_three_paths(engine: Engine, clock: FrozenClock) -> None:
    app, cache = exporter_app(engine, clock=clock, interval_s=60.0)
    served = Exporter(app, cache)
    try:
        assert served.scrape()[("memtasks_up", ())] == 1
        assert served.get("/healthz")[0] == 200
        assert served.get("/jobs/job%3Anone")[0] == 404
    finally:
        served.close()
    assert cache.reads == 1
