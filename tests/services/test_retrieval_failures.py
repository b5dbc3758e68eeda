"""The retrieval-failure logger, its database sink, the retention purge and the report.

Database tests run on a real SQLite file and a real PostgreSQL schema. Timing bounds are
generous: they catch a ``log()`` that waits for I/O, not a slow machine.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from memtasks.domain.clock import DAY_MS, FrozenClock
from memtasks.domain.errors import ValidationError
from memtasks.domain.retrieval import DEFAULT_RETENTION_MS, FailureType, RetrievalFailure
from memtasks.services.retrieval_failures import (
    DatabaseSink,
    FailureSink,
    RetrievalFailureLogger,
    purge_retrieval_failures,
)
from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.memory_tables import memory_retrieval_failures as t
from memtasks.storage.retrieval_repo import RetrievalFailures
from tests.helpers import all_at_once, wait_for

pytestmark = pytest.mark.integration

LOG_BOUND_S = 0.05  # one log() call, while the writer is stuck: generous on purpose
ROOT = Path(__file__).resolve().parents[2]


# ── helpers ──────────────────────────────────────────────────────────────────


def no_hit(**overrides: Any) -> RetrievalFailure:
    fields: dict[str, Any] = {
        "failure_type": FailureType.NO_HIT,
        "retrieval_strategy": "semantic",
        "query_text": "hello world",
        "query_len": 11,
        "latency_ms": 5,
    } | overrides
    return RetrievalFailure(**fields)


def low_confidence(score: float, threshold: float) -> RetrievalFailure:
    return RetrievalFailure(
        failure_type=FailureType.LOW_CONFIDENCE,
        retrieval_strategy="semantic",
        query_text="low confidence query",
        query_len=20,
        top_score=score,
        confidence_threshold=threshold,
        result_count=3,
        latency_ms=10,
    )


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(select(t).order_by(t.c.id))]


def row_count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(t)).scalar_one())


def timed_log(logger: RetrievalFailureLogger, record: RetrievalFailure) -> float:
    start = time.perf_counter()
    logger.log(record)
    return time.perf_counter() - start


class ListSink:
    """Keeps the batches in memory."""

    def __init__(self) -> None:
        self.batches: list[list[RetrievalFailure]] = []

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        self.batches.append(list(batch))


class GateSink:
    """Blocks every write until released (a stuck database), then delegates."""

    def __init__(self, inner: FailureSink | None = None) -> None:
        self.inner = inner or ListSink()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        self.entered.set()
        if not self.release.wait(60):
            raise TimeoutError("the test never released the gate")
        self.inner.write(batch)


class EnteredSink:
    """Signals when a write starts, then delegates (to watch a write block inside the database)."""

    def __init__(self, inner: FailureSink) -> None:
        self.inner = inner
        self.entered = threading.Event()

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        self.entered.set()
        self.inner.write(batch)


class FailingSink:
    """Raises for the first ``failures`` calls (all of them by default), then delegates."""

    def __init__(self, inner: FailureSink | None = None, failures: int | None = None) -> None:
        self.inner = inner or ListSink()
        self.failures = failures
        self.calls: list[list[RetrievalFailure]] = []

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        self.calls.append(list(batch))
        if self.failures is None or len(self.calls) <= self.failures:
            raise ConnectionError("database is down")
        self.inner.write(batch)


@pytest.fixture
def make_logger() -> Iterator[Callable[..., RetrievalFailureLogger]]:
    """A logger factory; every logger is shut down (and every gate released) afterwards."""
    made: list[RetrievalFailureLogger] = []
    sinks: list[Any] = []

    def make(sink: FailureSink, **options: Any) -> RetrievalFailureLogger:
        options.setdefault("register_atexit", False)
        logger = RetrievalFailureLogger(sink, **options)
        made.append(logger)
        sinks.append(sink)
        return logger

    yield make
    for sink in sinks:
        if isinstance(sink, GateSink):
            sink.release.set()
    for logger in made:
        logger.shutdown(timeout=30)


def assert_accounted(logger: RetrievalFailureLogger) -> None:
    s = logger.stats()
    assert s.pending == 0
    assert s.written + s.dropped + s.lost == s.logged


# ── the seed's logger tests, on both backends ────────────────────────────────


def test_no_hit_failure_is_persisted(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), flush_interval_s=0.01)
    assert logger.log(no_hit()) is True
    assert logger.shutdown() is True
    got = rows(engine)
    assert [r["failure_type"] for r in got] == ["no_hit"]
    assert got[0]["query_text"] == "hello world"
    assert got[0]["query_len"] == 11
    assert got[0]["edge_types_json"] == "[]"


def test_low_confidence_failure_is_persisted(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), flush_interval_s=0.01)
    logger.log(low_confidence(0.3, 0.7))
    logger.shutdown()
    got = rows(engine)
    assert len(got) == 1
    assert got[0]["failure_type"] == "low_confidence"
    assert got[0]["top_score"] == pytest.approx(0.3, abs=1e-5)
    assert got[0]["confidence_threshold"] == pytest.approx(0.7, abs=1e-5)
    assert got[0]["result_count"] == 3


def test_log_does_not_block_when_the_queue_is_full(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    sink = GateSink(DatabaseSink(engine))
    logger = make_logger(sink, capacity=1, batch_size=1, flush_interval_s=60)
    assert logger.log(no_hit(turn_index=1)) is True
    assert sink.entered.wait(10), "the writer never took the first record"
    start = time.perf_counter()
    assert logger.log(no_hit(turn_index=2)) is True  # fills the queue (capacity 1)
    assert logger.log(no_hit(turn_index=3)) is False
    assert time.perf_counter() - start < 2 * LOG_BOUND_S, "log() waited for the stuck writer"
    assert logger.stats().dropped == 1
    sink.release.set()
    assert logger.shutdown() is True
    assert sorted(r["turn_index"] for r in rows(engine)) == [1, 2]
    assert logger.stats().written == 2
    assert_accounted(logger)


def test_query_text_truncated_to_512_chars_and_query_len_is_the_original_bytes(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), flush_interval_s=0.01)
    logger.log(no_hit(query_text="x" * 1000, query_len=1000))
    logger.log(RetrievalFailure.new("no_hit", "semantic", "ü" * 1000, turn_index=1))
    logger.shutdown()
    got = rows(engine)
    assert [len(r["query_text"]) for r in got] == [512, 512]
    assert got[0]["query_text"] == "x" * 512
    assert got[1]["query_text"] == "ü" * 512
    assert [r["query_len"] for r in got] == [1000, 2000]


def test_multiple_records_batch_flushed(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), batch_size=16, flush_interval_s=60)
    for i in range(5):
        logger.log(no_hit(turn_index=i))
    logger.log(low_confidence(0.2, 0.8))
    assert logger.shutdown() is True
    assert row_count(engine) == 6
    s = logger.stats()
    assert (s.written, s.batches) == (6, 1), "the six records are one batch, drained by shutdown"


# ── batching ─────────────────────────────────────────────────────────────────


def test_a_full_batch_is_written_without_waiting_for_the_interval(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), batch_size=4, flush_interval_s=3600)
    for i in range(8):
        logger.log(no_hit(turn_index=i))
    wait_for(lambda: logger.stats().written == 8, timeout=30)
    assert logger.stats().batches == 2
    assert row_count(engine) == 8


def test_a_partial_batch_is_written_after_the_interval(
    make_logger: Callable[..., RetrievalFailureLogger],
) -> None:
    sink = ListSink()
    logger = make_logger(sink, batch_size=100, capacity=100, flush_interval_s=0.05)
    for i in range(3):
        logger.log(no_hit(turn_index=i))
    wait_for(lambda: logger.stats().written == 3, timeout=30)
    assert [len(b) for b in sink.batches] == [3]


def test_records_are_stamped_when_logged(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    clock = FrozenClock()
    logged_at = clock.now_ms
    logger = make_logger(DatabaseSink(engine, clock=clock), clock=clock, flush_interval_s=3600)
    logger.log(no_hit(turn_index=0))
    logger.log(no_hit(turn_index=1, created_at_ms=42))
    clock.advance(5_000)
    logger.shutdown()
    assert [(r["turn_index"], r["created_at_ms"]) for r in rows(engine)] == [(0, logged_at), (1, 42)]


# ── log() never blocks ───────────────────────────────────────────────────────


def test_log_does_not_block_while_sqlite_is_locked(
    tmp_path: Path, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    path = tmp_path / "locked.sqlite3"
    engine = get_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sink = EnteredSink(DatabaseSink(engine))
        logger = make_logger(sink, capacity=64, batch_size=4, flush_interval_s=0.01)
        for i in range(4):
            logger.log(no_hit(turn_index=i))
        assert sink.entered.wait(10), "the writer never started its write"
        worst = max(timed_log(logger, no_hit(turn_index=i)) for i in range(4, 504))
        assert worst < LOG_BOUND_S, f"log() took {worst * 1000:.1f} ms while the database was locked"
        s = logger.stats()
        assert s.written == 0, "the write is held by the exclusive lock"
        assert s.dropped > 0, "the bounded queue filled up and dropped the excess"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert logger.shutdown(timeout=60) is True
    s = logger.stats()
    assert s.lost == 0
    assert s.written == s.logged - s.dropped == row_count(engine)
    assert_accounted(logger)


def test_log_does_not_block_while_the_sink_is_stuck(
    make_logger: Callable[..., RetrievalFailureLogger],
) -> None:
    sink = GateSink()
    logger = make_logger(sink, capacity=32, batch_size=8, flush_interval_s=0.01)
    logger.log(no_hit())
    assert sink.entered.wait(10)
    worst = max(timed_log(logger, no_hit(turn_index=i)) for i in range(1_000))
    assert worst < LOG_BOUND_S, f"log() took {worst * 1000:.1f} ms while the sink was stuck"
    assert logger.stats().dropped == 1_001 - 1 - 32
    sink.release.set()
    assert logger.shutdown(timeout=30) is True
    assert logger.stats().written == 33
    assert_accounted(logger)


def test_log_does_not_block_while_the_database_is_down(
    make_logger: Callable[..., RetrievalFailureLogger],
) -> None:
    sink = FailingSink()
    logger = make_logger(sink, capacity=32, batch_size=4, flush_interval_s=0.01, retry_backoff_s=0.02)
    logger.log(no_hit())
    wait_for(lambda: logger.stats().retries >= 1, timeout=10)
    worst = max(timed_log(logger, no_hit(turn_index=i)) for i in range(1_000))
    assert worst < LOG_BOUND_S, f"log() took {worst * 1000:.1f} ms while the sink was failing"
    logger.shutdown(timeout=60)
    s = logger.stats()
    assert s.written == 0
    assert s.lost > 0 and s.dropped > 0
    assert_accounted(logger)


# ── nothing is lost silently ─────────────────────────────────────────────────


def test_every_record_is_written_or_counted(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), capacity=64, batch_size=16, flush_interval_s=0.01)
    ids = itertools.count()
    threads, per_thread = 4, 25_000

    def produce() -> int:
        accepted = 0
        for _ in range(per_thread):
            accepted += logger.log(no_hit(turn_index=next(ids)))
        return accepted

    accepted = sum(all_at_once(threads, produce))
    assert logger.shutdown(timeout=120) is True
    s = logger.stats()
    assert s.logged == threads * per_thread == 100_000
    assert s.written + s.dropped + s.lost == s.logged
    assert s.lost == 0
    assert s.written == accepted == s.logged - s.dropped
    assert s.dropped > 0, "a capacity of 64 cannot hold 100,000 records"
    assert row_count(engine) == s.written
    with engine.connect() as c:
        distinct = c.execute(select(func.count(func.distinct(t.c.turn_index)))).scalar_one()
    assert distinct == s.written, "no record is written twice"


def test_a_failing_sink_is_retried_then_counted_as_lost(
    make_logger: Callable[..., RetrievalFailureLogger],
) -> None:
    sink = FailingSink()
    logger = make_logger(
        sink, batch_size=5, flush_interval_s=3600, max_batch_retries=3, retry_backoff_s=0.001
    )
    for i in range(5):
        logger.log(no_hit(turn_index=i))
    assert logger.shutdown(timeout=30) is True
    s = logger.stats()
    assert len(sink.calls) == 4, "one attempt and three retries"
    assert all([r.turn_index for r in batch] == list(range(5)) for batch in sink.calls)
    assert (s.lost, s.retries, s.written, s.batches) == (5, 3, 0, 0)
    assert_accounted(logger)


def test_no_retries_means_one_attempt(make_logger: Callable[..., RetrievalFailureLogger]) -> None:
    sink = FailingSink()
    logger = make_logger(sink, max_batch_retries=0, flush_interval_s=0.01)
    logger.log(no_hit())
    logger.shutdown(timeout=30)
    assert len(sink.calls) == 1
    assert (logger.stats().lost, logger.stats().retries) == (1, 0)


def test_a_sink_failing_once_then_succeeding_loses_nothing(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    sink = FailingSink(DatabaseSink(engine), failures=1)
    logger = make_logger(sink, batch_size=5, flush_interval_s=3600, retry_backoff_s=0.001)
    for i in range(5):
        logger.log(no_hit(turn_index=i))
    assert logger.shutdown(timeout=30) is True
    s = logger.stats()
    assert (s.written, s.lost, s.retries, s.batches) == (5, 0, 1, 1)
    assert sorted(r["turn_index"] for r in rows(engine)) == list(range(5))


def test_a_database_locked_past_the_retries_loses_that_batch_only(
    tmp_path: Path, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    path = tmp_path / "busy.sqlite3"
    engine = get_engine(f"sqlite:///{path}", EngineOptions(busy_timeout_s=0.01))
    logger = make_logger(
        DatabaseSink(engine), batch_size=3, flush_interval_s=3600, max_batch_retries=2, retry_backoff_s=0.001
    )
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(3):
            logger.log(no_hit(turn_index=i))
        wait_for(lambda: logger.stats().lost == 3, timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert logger.stats().retries == 2
    for i in range(3, 6):
        logger.log(no_hit(turn_index=i))
    assert logger.shutdown(timeout=30) is True
    assert sorted(r["turn_index"] for r in rows(engine)) == [3, 4, 5]
    assert logger.stats().written == 3
    assert_accounted(logger)


# ── shutdown ─────────────────────────────────────────────────────────────────


def test_shutdown_drains_everything_queued(
    engine: Engine, make_logger: Callable[..., RetrievalFailureLogger]
) -> None:
    logger = make_logger(DatabaseSink(engine), capacity=256, batch_size=16, flush_interval_s=3600)
    for i in range(100):
        assert logger.log(no_hit(turn_index=i)) is True
    assert logger.shutdown(timeout=60) is True
    assert sorted(r["turn_index"] for r in rows(engine)) == list(range(100))
    assert logger.closed
    assert logger.shutdown() is True, "a second shutdown is harmless"
    before = logger.stats()
    assert logger.log(no_hit(turn_index=100)) is False, "logged after shutdown: dropped, no exception"
    after = logger.stats()
    assert (after.logged, after.dropped, after.written) == (before.logged + 1, before.dropped + 1, 100)
    assert row_count(engine) == 100
    assert_accounted(logger)


def test_context_manager_drains(engine: Engine) -> None:
    with RetrievalFailureLogger(DatabaseSink(engine), flush_interval_s=3600, register_atexit=False) as logger:
        for i in range(20):
            logger.log(no_hit(turn_index=i))
    assert logger.closed
    assert row_count(engine) == 20


def test_shutdown_of_a_stuck_writer_times_out_and_counts_the_rest_lost(
    make_logger: Callable[..., RetrievalFailureLogger],
) -> None:
    inner = ListSink()
    sink = GateSink(inner)
    logger = make_logger(sink, capacity=16, batch_size=4, flush_interval_s=0.01)
    for i in range(10):
        logger.log(no_hit(turn_index=i))
    assert sink.entered.wait(10)
    start = time.monotonic()
    assert logger.shutdown(timeout=0.2) is False
    assert time.monotonic() - start < 10
    s = logger.stats()
    assert (s.logged, s.written, s.lost, s.pending) == (10, 0, 10, 0)
    assert logger.shutdown(timeout=30) is False, "a second call returns at once"
    # The stuck batch completes after all: it moves from lost to written; nothing else is written.
    sink.release.set()
    wait_for(lambda: logger.stats().written == 4, timeout=10)
    s = logger.stats()
    assert (s.written, s.lost) == (4, 6)
    assert [len(b) for b in inner.batches] == [4]
    assert_accounted(logger)


def test_the_exit_path_drains_the_queue(engine: Engine, db_url: str) -> None:
    script = textwrap.dedent(
        """
        import atexit, dataclasses, json, sys
        from memtasks.domain.retrieval import RetrievalFailure
        from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
        from memtasks.storage.engine import get_engine

        engine = get_engine(sys.argv[1])
        box = {}
        # Registered first, so it runs after the logger's own exit hook (atexit is LIFO).
        atexit.register(lambda: print(json.dumps(dataclasses.asdict(box["logger"].stats()))))
        logger = RetrievalFailureLogger(
            DatabaseSink(engine), capacity=256, batch_size=256, flush_interval_s=3600
        )
        box["logger"] = logger
        for i in range(50):
            logger.log(RetrievalFailure.new("timeout", "hybrid", f"query {i}", turn_index=i))
        # no shutdown(): the interpreter's exit path must drain the queue
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert (stats["logged"], stats["written"], stats["pending"]) == (50, 50, 0)
    assert row_count(engine) == 50


def test_a_forked_child_writes_its_own_records(engine: Engine, db_url: str) -> None:
    script = textwrap.dedent(
        """
        import dataclasses, json, os, sys, time
        from memtasks.domain.retrieval import RetrievalFailure
        from memtasks.services.retrieval_failures import DatabaseSink, RetrievalFailureLogger
        from memtasks.storage.engine import get_engine

        def rec(who):
            return RetrievalFailure.new("no_hit", "semantic", "q", conversation_id=who)

        logger = RetrievalFailureLogger(DatabaseSink(get_engine(sys.argv[1])), flush_interval_s=0.01)
        logger.log(rec("parent-before"))
        deadline = time.monotonic() + 30
        while logger.stats().written < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            code = 4
            try:
                for _ in range(5):
                    logger.log(rec("child"))
                drained = logger.shutdown(30)
                s = logger.stats()
                code = 0 if drained and (s.logged, s.written) == (5, 5) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        logger.log(rec("parent-after"))
        logger.shutdown(30)
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), **dataclasses.asdict(logger.stats())}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["child"] == 0, done.stderr
    assert (out["logged"], out["written"]) == (2, 2)
    got = sorted(r["conversation_id"] for r in rows(engine))
    assert got == ["child"] * 5 + ["parent-after", "parent-before"]


# ── configuration and misuse ─────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"capacity": 0}, "capacity must be at least 1"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"capacity": 8, "batch_size": 16}, "exceeds capacity"),
        ({"flush_interval_s": 0}, "flush_interval_s must be positive"),
        ({"max_batch_retries": -1}, "max_batch_retries must not be negative"),
        ({"retry_backoff_s": -0.1}, "retry_backoff_s must not be negative"),
    ],
)
def test_invalid_configuration_is_refused(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RetrievalFailureLogger(ListSink(), register_atexit=False, **options)


def test_log_refuses_what_is_not_a_record(make_logger: Callable[..., RetrievalFailureLogger]) -> None:
    logger = make_logger(ListSink())
    with pytest.raises(TypeError, match="RetrievalFailure"):
        logger.log({"failure_type": "no_hit"})  # type: ignore[arg-type]
    assert logger.stats().logged == 0


# ── the repository: batch insert, retention purge, report ────────────────────


def test_insert_batch_is_one_transaction(engine: Engine) -> None:
    repo = RetrievalFailures(engine)
    bad = no_hit(turn_index=1)
    object.__setattr__(bad, "failure_type", "bogus")  # bypass validation: the CHECK refuses it
    with pytest.raises(IntegrityError):
        repo.insert_batch([no_hit(turn_index=0), bad, no_hit(turn_index=2)])
    assert row_count(engine) == 0
    assert repo.insert_batch([no_hit(turn_index=0), no_hit(turn_index=2)]) == 2
    assert repo.insert_batch([]) == 0
    assert row_count(engine) == 2


def test_insert_batch_stores_every_field(engine: Engine, clock: FrozenClock) -> None:
    record = RetrievalFailure.new(
        "error",
        "graph",
        "what did I say?",
        conversation_id="conv-1",
        turn_index=7,
        top_score=0.25,
        confidence_threshold=0.5,
        result_count=2,
        latency_ms=123,
        edge_types=["mentions", "causes"],
        error_context="boom",
    )
    RetrievalFailures(engine, clock=clock).insert_batch([record])
    (got,) = rows(engine)
    got.pop("id")
    assert got == {
        "conversation_id": "conv-1",
        "turn_index": 7,
        "failure_type": "error",
        "retrieval_strategy": "graph",
        "query_text": "what did I say?",
        "query_len": 15,
        "top_score": pytest.approx(0.25),
        "confidence_threshold": pytest.approx(0.5),
        "result_count": 2,
        "latency_ms": 123,
        "edge_types_json": '["mentions", "causes"]',
        "error_context": "boom",
        "created_at_ms": clock.now_ms,
    }


def test_purge_deletes_exactly_the_rows_older_than_the_cutoff(engine: Engine, clock: FrozenClock) -> None:
    cutoff = 1_000_000_000_000  # 13 digits: older rows have fewer, so text order would be wrong
    clock.now_ms = cutoff + DAY_MS
    older = [5, 50, 500, 999_999_999, 99_999_999_999, 999_999_999_998, 999_999_999_999]
    kept = [cutoff, cutoff + 1, cutoff + DAY_MS]
    repo = RetrievalFailures(engine, clock=clock)
    repo.insert_batch([no_hit(turn_index=i, created_at_ms=at) for i, at in enumerate(older + kept)])
    assert purge_retrieval_failures(engine, DAY_MS, clock, batch=3) == len(older)
    assert sorted(r["created_at_ms"] for r in rows(engine)) == kept
    assert purge_retrieval_failures(engine, DAY_MS, clock, batch=3) == 0


def test_purge_default_retention_is_90_days(engine: Engine, clock: FrozenClock) -> None:
    now = clock.now_ms
    repo = RetrievalFailures(engine, clock=clock)
    stamps = [now - DEFAULT_RETENTION_MS - 1, now - DEFAULT_RETENTION_MS, now]
    repo.insert_batch([no_hit(turn_index=i, created_at_ms=at) for i, at in enumerate(stamps)])
    assert purge_retrieval_failures(engine, clock=clock) == 1
    assert [r["turn_index"] for r in rows(engine)] == [1, 2]


def test_purge_refuses_a_non_positive_retention(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(ValidationError, match="positive"):
        purge_retrieval_failures(engine, 0, clock)


def test_report_groups_by_type_and_strategy(engine: Engine, clock: FrozenClock) -> None:
    now = clock.now_ms
    repo = RetrievalFailures(engine, clock=clock)
    repo.insert_batch(
        [
            no_hit(latency_ms=10, created_at_ms=now - 3_000),
            no_hit(latency_ms=20, created_at_ms=now - 2_000),
            no_hit(latency_ms=30, created_at_ms=now - 1_000),
            RetrievalFailure.new(
                "low_confidence",
                "semantic",
                "q",
                top_score=0.2,
                result_count=3,
                latency_ms=5,
                created_at_ms=now - 500,
            ),
            RetrievalFailure.new(
                "low_confidence",
                "semantic",
                "q",
                top_score=0.4,
                result_count=5,
                latency_ms=15,
                created_at_ms=now - 400,
            ),
            no_hit(retrieval_strategy="graph", latency_ms=7, created_at_ms=now - 100),
            RetrievalFailure.new("timeout", "semantic", "q", latency_ms=900, created_at_ms=now - 10 * DAY_MS),
        ]
    )
    report = repo.report(since_ms=now - DAY_MS)
    assert [(s.failure_type, s.retrieval_strategy, s.count) for s in report] == [
        (FailureType.NO_HIT, "semantic", 3),
        (FailureType.LOW_CONFIDENCE, "semantic", 2),
        (FailureType.NO_HIT, "graph", 1),
    ]
    no_hits, low, graph = report
    assert no_hits.avg_latency_ms == pytest.approx(20.0)
    assert no_hits.max_latency_ms == 30
    assert no_hits.avg_top_score is None
    assert (no_hits.first_at_ms, no_hits.last_at_ms) == (now - 3_000, now - 1_000)
    assert low.avg_top_score == pytest.approx(0.3)
    assert low.avg_result_count == pytest.approx(4.0)
    assert low.avg_latency_ms == pytest.approx(10.0)
    assert (graph.count, graph.max_latency_ms) == (1, 7)
    assert repo.report_window(DAY_MS) == report
    everything = repo.report()
    assert sum(s.count for s in everything) == 7
    assert (everything[-1].failure_type, everything[-1].max_latency_ms) == (FailureType.TIMEOUT, 900)
    before = repo.report(until_ms=now - 1_000)  # until is exclusive
    assert sorted((s.failure_type.value, s.count) for s in before) == [("no_hit", 2), ("timeout", 1)]
    assert repo.report(since_ms=now + 1) == []
    assert repo.count(since_ms=now - DAY_MS) == 6
