"""The main job's synthetic agent logs its retrieval failures as an agent does, and the report
says why any logged failure was not stored and which setting avoids it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from memtasks.config import load_settings
from memtasks.demo.report import retrieval_note
from memtasks.demo.workload import Sizes, log_retrieval_failures
from memtasks.services.retrieval_failures import DatabaseSink, LoggerStats, RetrievalFailureLogger
from memtasks.storage.engine import get_engine
from memtasks.storage.memory_tables import memory_retrieval_failures
from memtasks.storage.rows import reading

pytestmark = pytest.mark.integration


def test_the_agent_logs_at_a_pace_the_default_logger_holds(tmp_path: Path) -> None:
    """The full demo's 500 failures through a logger with the default settings (a queue of 256):
    none is dropped, every one is stored."""
    settings = load_settings()
    assert settings.retrieval_failure_capacity == 256
    engine = get_engine(f"sqlite:///{tmp_path}/memtasks.sqlite3")
    logger = RetrievalFailureLogger(
        DatabaseSink(engine),
        capacity=settings.retrieval_failure_capacity,
        batch_size=settings.retrieval_failure_batch_size,
        flush_interval_s=settings.retrieval_failure_flush_interval_s,
        register_atexit=False,
    )
    sizes = Sizes()
    assert sizes.retrieval_failures == 500
    stats = log_retrieval_failures(logger, sizes, "demotest")
    assert (stats.logged, stats.written, stats.dropped, stats.lost, stats.pending) == (500, 500, 0, 0, 0)
    assert stats.batches > 500 // settings.retrieval_failure_batch_size  # sent as it came, not at the end
    with reading(engine) as conn:
        assert conn.execute(select(func.count()).select_from(memory_retrieval_failures)).scalar_one() == 500
    assert retrieval_note(stats, settings) is None


def stats(**counts: int) -> LoggerStats:
    base = {"logged": 500, "written": 500, "dropped": 0, "lost": 0, "batches": 32, "retries": 0, "pending": 0}
    return LoggerStats(**{**base, **counts})


def test_the_report_explains_a_drop_and_names_the_settings_that_avoid_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMTASKS_RETRIEVAL_FAILURE_CAPACITY", "64")
    settings = load_settings()
    note = retrieval_note(stats(written=272, dropped=228), settings)
    assert note is not None
    assert note.startswith("228 dropped: logged while the logger's queue was full")
    for setting in (
        "MEMTASKS_RETRIEVAL_FAILURE_CAPACITY=64",
        "MEMTASKS_RETRIEVAL_FAILURE_BATCH_SIZE=16",
        "MEMTASKS_RETRIEVAL_FAILURE_FLUSH_INTERVAL_S=0.1",
    ):
        assert setting in note
    assert "lost" not in note
    lost = retrieval_note(stats(written=484, lost=16), settings)
    assert lost is not None and lost.startswith("16 lost: their batches could not be sent")
    assert "dropped" not in lost
