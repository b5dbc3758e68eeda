"""Figures of memtasks alone, measured once per run: claim cost as the table grows, idle
latency, consolidation at scale, the retrieval-failure logger; and the claimer-scaling
probe that the rounds repeat."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from typing import Any

from sqlalchemy import text

from bench.harness.systems import LOCKS, MEMTASKS_QUEUES, PG_BENCH, Memtasks, celery_worker, say

READY_ROW = (
    "INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, status, attempts, max_attempts,"
    " available_at_ms, created_at_ms, updated_at_ms)"
    " SELECT :prefix || g, 'extract_chunk', 4, '{}', 'ready', 0, 5, 0, 0, 0 FROM generate_series(1, :n) g"
)
DONE_ROW = (
    "INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, status, attempts, max_attempts,"
    " available_at_ms, created_at_ms, completed_at_ms, updated_at_ms)"
    " SELECT :prefix || g, 'extract_chunk', 4, '{}', 'done', 1, 5, 0, 0, 1, 1 FROM generate_series(1, :n) g"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def claim_cost(sizes: list[int], claims: int, *, grow: str) -> dict[int, tuple[float, float]]:
    """claim_next + settle_done p50/p99 (ms) with ``size`` rows in the table: ``grow`` ``done``
    (finished history) or ``ready`` (a ready backlog the claims take from)."""
    client = Memtasks("claim cost", "noop", {})
    found: dict[int, tuple[float, float]] = {}
    try:
        for size in sizes:
            client.empty()
            with client.engine.begin() as conn:
                conn.execute(text(DONE_ROW if grow == "done" else READY_ROW), {"prefix": "row:", "n": size})
                conn.execute(text("ANALYZE mem_tree_jobs"))
            if grow == "done":
                client.enqueue(claims, publish=False)
            latencies = []
            for _ in range(claims):
                start = time.perf_counter()
                job = client.jobs.claim_next()
                assert job is not None
                client.jobs.settle_done(job.lease)
                latencies.append((time.perf_counter() - start) * 1000)
            found[size] = (pct(latencies, 0.5), pct(latencies, 0.99))
            say(f"claim+settle at {size:,} {grow} rows: p50 {found[size][0]:.2f} ms")
    finally:
        client.close()
    return found


# ── claimers on one database ─────────────────────────────────────────────────


def _claimer(url: str, seconds: float, ready: Any, out: Any) -> None:
    from memtasks.storage.engine import EngineOptions, get_engine
    from memtasks.storage.mem_tree_queue import MemTreeJobs

    jobs = MemTreeJobs(get_engine(url, EngineOptions(pool_size=1)))
    jobs.engine.connect().close()  # connected before the clock starts
    ready.wait()  # every claimer imported and connected: all start together
    done, stop = 0, time.monotonic() + seconds
    while time.monotonic() < stop:
        job = jobs.claim_next()
        if job is None:
            break
        jobs.settle_done(job.lease)
        done += 1
    out.put(done)


def claimers(count: int, seconds: float, backlog: int) -> float:
    """Claims settled per second by ``count`` processes, each claiming one job at a time
    (``claim_next`` + ``settle_done``) from one ready backlog on PostgreSQL, all starting
    together once every one has imported memtasks and connected."""
    client = Memtasks("claimers", "noop", {})
    try:
        client.empty()
        with client.engine.begin() as conn:
            conn.execute(text(READY_ROW), {"prefix": "c:", "n": backlog})
            conn.execute(text("ANALYZE mem_tree_jobs"))
    finally:
        client.close()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    ready = context.Barrier(count)
    procs = [context.Process(target=_claimer, args=(PG_BENCH, seconds, ready, out)) for _ in range(count)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=300) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    return total / seconds


# ── latency on an idle fleet (default settings) ──────────────────────────────


def latency(n: int) -> dict[str, float]:
    from sqlalchemy import select

    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.services.mem_tree import Followup
    from memtasks.storage.tables import mem_tree_jobs

    client = Memtasks("memtasks latency", "noop", {})
    try:
        client.empty()
        with celery_worker(
            "memtasks latency", "memtasks.worker.app", client.environment, MEMTASKS_QUEUES
        ) as alive:
            from bench.harness.systems import wait_ready

            wait_ready("memtasks latency", client.app, alive)
            for i in range(n):
                job_id = client.jobs.enqueue(
                    NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"l{i}"}), published=True
                )
                assert job_id is not None
                client.publisher.mem_tree([Followup(job_id, "extract_chunk")])
                time.sleep(0.02)  # one job at a time: the fleet idles between them (not a sync)
            deadline = time.monotonic() + 120
            while client.progress()[1] < n:
                alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("latency jobs not done within 120 s")
                time.sleep(0.05)
        with client.engine.connect() as conn:
            rows = conn.execute(
                select(
                    mem_tree_jobs.c.started_at_ms - mem_tree_jobs.c.created_at_ms,
                    mem_tree_jobs.c.completed_at_ms - mem_tree_jobs.c.created_at_ms,
                )
            ).all()
    finally:
        client.close()
    start = [float(r[0]) for r in rows]
    end = [float(r[1]) for r in rows]
    return {
        "start p50": pct(start, 0.5),
        "start p95": pct(start, 0.95),
        "start p99": pct(start, 0.99),
        "done p50": pct(end, 0.5),
        "done p95": pct(end, 0.95),
    }


# ── consolidation at scale ───────────────────────────────────────────────────


def consolidation(messages: int, *, archive_grace_days: float = 7.0) -> dict[str, float]:
    """Prune ``messages`` old messages while a writer inserts into a live conversation: the
    prune's time and the writer's waits. ``archive_grace_days=0`` deletes instead of archiving."""
    from memtasks.domain.gates import ConsolidationConfig
    from memtasks.locks import RedisLockGate, redis_client
    from memtasks.services.consolidation import Consolidator
    from memtasks.storage.archive_tables import archived_messages
    from memtasks.storage.engine import get_engine
    from memtasks.storage.memory_tables import conversations
    from memtasks.storage.memory_tables import messages as messages_t

    engine = get_engine(PG_BENCH)
    old = int(time.time() * 1000) - 60 * 86_400_000
    with engine.begin() as conn:
        conn.execute(messages_t.delete())
        conn.execute(archived_messages.delete())
        conn.execute(conversations.delete())
        conn.execute(
            text(
                "INSERT INTO conversations (id, channel, sender_id, status, started_at_ms, updated_at_ms,"
                " last_activity_ms) SELECT 'old' || g, 'chat', 's', 'closed', :old, :old, :old"
                " FROM generate_series(1, 1000) g"
            ),
            {"old": old},
        )
        conn.execute(
            text(
                "INSERT INTO conversations (id, channel, sender_id, status, started_at_ms, updated_at_ms,"
                " last_activity_ms) VALUES ('live', 'chat', 's', 'active', :now, :now, :now)"
            ),
            {"now": old + 60 * 86_400_000},
        )
        conn.execute(
            text(
                "INSERT INTO messages (conversation_id, role, content, timestamp_ms)"
                " SELECT 'old' || (g % 1000 + 1), 'user', 'message ' || g, :old FROM generate_series(1, :n) g"
            ),
            {"old": old, "n": messages},
        )
    # A clean start every round: the rounds before left dead rows (this machine's PostgreSQL
    # runs without autovacuum), and a prune walking them would measure the bloat, not the prune.
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("VACUUM ANALYZE messages"))
        conn.execute(text("VACUUM ANALYZE archived_messages"))
        conn.execute(text("VACUUM ANALYZE conversations"))
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(
                    messages_t.insert().values(
                        conversation_id="live", role="user", content="still talking", timestamp_ms=0
                    )
                )
            waits.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)

    gate = RedisLockGate(redis_client(LOCKS), "memtasks:bench:consolidate", ttl_s=60)
    config = ConsolidationConfig(delete_batch_size=1000, archive_grace_days=archive_grace_days)
    consolidator = Consolidator(engine, gate, config)
    thread = threading.Thread(target=writer)
    thread.start()
    start = time.perf_counter()
    report = consolidator.prune("manual")
    duration = time.perf_counter() - start
    stop.set()
    thread.join()
    assert report.messages_pruned == messages, report
    return {"seconds": duration, "writer p99": pct(waits, 0.99), "writer worst": max(waits)}


# ── the retrieval-failure logger ─────────────────────────────────────────────


def logger(n: int) -> dict[str, float]:
    from memtasks.domain.retrieval import RetrievalFailure
    from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
    from memtasks.storage.engine import get_engine

    record = RetrievalFailure.new("no_hit", "vector", "what did Alice say about Paris?")

    class Null:
        def write(self, batch: Any) -> None:
            return None

    log = RetrievalFailureLogger(Null(), capacity=n + 1, batch_size=256, register_atexit=False)
    timings = []
    for _ in range(n):
        start = time.perf_counter_ns()
        log.log(record)
        timings.append((time.perf_counter_ns() - start) / 1000)
    log.shutdown(timeout=30)
    sink = DatabaseSink(get_engine(PG_BENCH))
    batch = [record.stamped(0)] * 256
    flushes = max(1, n // 256)
    start = time.perf_counter()
    for _ in range(flushes):
        sink.write(batch)
    return {
        "p50": pct(timings, 0.5),
        "p99": pct(timings, 0.99),
        "flush": flushes * 256 / (time.perf_counter() - start),
        "median": statistics.median(timings),
    }
