"""Nobody waits on a lost host: a process that vanished mid-transaction, its row locks held.

The "lost host" is a real process that opens a memtasks session, locks the row a job needs
and stops (SIGSTOP: its socket stays open, it never sends another byte — what a host cut off
by the network looks like to the server). The healthy worker meets the lock, waits at most
``lock_timeout``, steps aside with its attempt refunded; the server ends the lost session
after ``idle_in_transaction_session_timeout`` and the job then runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text

from memtasks.domain.clock import FrozenClock
from memtasks.domain.tree import append_chunk_job
from memtasks.services.mem_tree import MemTreeRunner, Outcome
from memtasks.storage.engine import EngineOptions, get_engine, session_settings
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import mem_tree_buffer_items
from memtasks.storage.queue.engine import LOCK_RETRY_MS, LOCK_WAIT_REASON
from memtasks.storage.tables import mem_tree_jobs
from memtasks.storage.tree_repo import NewChunk, TreeStore
from tests.helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

OPTIONS = EngineOptions(lock_timeout_s=0.5, idle_in_transaction_s=3.0, dead_peer_s=6.0)

LOST_HOST = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import text
    from memtasks.storage.engine import EngineOptions, get_engine
    engine = get_engine(sys.argv[1], EngineOptions(lock_timeout_s=0.5, idle_in_transaction_s=3.0))
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO mem_tree_buffers (tree_id, level, opened_at_ms, updated_at_ms)"
                      " VALUES ('t1', 0, 0, 0) ON CONFLICT DO NOTHING"))
    conn.execute(text("SELECT level FROM mem_tree_buffers WHERE tree_id = 't1' AND level = 0 FOR UPDATE"))
    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    print(pid, flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    """
)


@pytest.fixture
def lost_host(pg_schema: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A process holding the buffer row of tree t1, level 0, in an open transaction, stopped."""
    proc = subprocess.Popen([sys.executable, "-c", LOST_HOST, pg_schema], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        backend = int(proc.stdout.readline())
        wait_for(lambda: _state(proc.pid) == "T", timeout=10)
        yield proc, backend
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def _session_alive(engine: Engine, backend: int) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": backend}
            ).scalar_one()
        )


def test_every_session_bounds_lock_waits_lost_transactions_and_silent_peers(pg_schema: str) -> None:
    engine = get_engine(pg_schema, OPTIONS)
    wanted = session_settings(OPTIONS)
    with engine.connect() as conn:
        shown = {
            name: conn.execute(text("SELECT current_setting(:n)"), {"n": name}).scalar_one()
            for name in wanted
        }
        search_path = conn.execute(text("SHOW search_path")).scalar_one()
    assert shown["lock_timeout"] == "500ms"
    assert shown["idle_in_transaction_session_timeout"] == "3s"
    assert shown["tcp_user_timeout"] == "6000"  # milliseconds
    assert shown["tcp_keepalives_idle"] == "2"
    assert int(shown["tcp_keepalives_count"]) * int(shown["tcp_keepalives_interval"]) + 2 <= 6, shown
    assert search_path.startswith("t_"), "the URL's own options are kept"


def test_a_read_only_session_keeps_the_bounds_and_stays_read_only(pg_schema: str) -> None:
    get_engine(pg_schema, OPTIONS)  # the schema's tables
    engine = get_engine(pg_schema, EngineOptions(read_only=True, lock_timeout_s=0.5))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "500ms"
        assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on"


def test_a_job_that_meets_a_lost_hosts_lock_steps_aside_then_runs_once_the_server_ends_it(
    pg_schema: str, lost_host: tuple[subprocess.Popen[str], int]
) -> None:
    _, backend = lost_host
    engine = get_engine(pg_schema, OPTIONS)
    clock = FrozenClock(1_700_000_000_000)
    TreeStore(engine, clock=clock).add_chunks(
        [NewChunk(id="c1", tree_id="t1", source_id="s1", doc_id="d1", content="Alice met Bob.")]
    )
    jobs = MemTreeJobs(engine, clock=clock)
    job_id = jobs.enqueue(append_chunk_job("t1", "c1", "s1"))
    assert job_id is not None
    runner = MemTreeRunner(engine, jobs, clock=clock)

    started = time.monotonic()
    result = runner.run_next()
    waited = time.monotonic() - started

    assert result is not None and result.outcome is Outcome.DEFERRED, result
    assert waited < 5, f"the worker was held {waited:.1f} s by a lost host's lock"
    with engine.connect() as conn:
        row = conn.execute(select(mem_tree_jobs).where(mem_tree_jobs.c.id == job_id)).mappings().one()
    assert row["status"] == "ready"
    assert row["attempts"] == 0, "the attempt is refunded"
    assert row["last_error"].startswith(LOCK_WAIT_REASON)
    assert clock() + LOCK_RETRY_MS <= row["available_at_ms"] <= clock() + 2 * LOCK_RETRY_MS

    # The server ends the lost session (idle in transaction), and its lock with it.
    wait_for(lambda: not _session_alive(engine, backend), timeout=20, interval=0.2)
    clock.advance(2 * LOCK_RETRY_MS)
    result = runner.run_next()
    assert result is not None and result.outcome is Outcome.DONE, result
    with engine.connect() as conn:
        items = conn.execute(select(mem_tree_buffer_items.c.item_id)).scalars().all()
        attempts = conn.execute(
            select(mem_tree_jobs.c.attempts).where(mem_tree_jobs.c.id == job_id)
        ).scalar_one()
    assert items == ["c1"]
    assert attempts == 1


def test_a_stopped_host_keeps_no_lock_past_the_idle_bound(
    pg_schema: str, lost_host: tuple[subprocess.Popen[str], int]
) -> None:
    """Without anyone meeting its lock, the lost session is ended all the same."""
    proc, backend = lost_host
    engine = get_engine(pg_schema, OPTIONS)
    started = time.monotonic()
    wait_for(lambda: not _session_alive(engine, backend), timeout=20, interval=0.2)
    assert time.monotonic() - started < 10
    assert _state(proc.pid) == "T", "the host is still stopped: the server ended its session"
    os.kill(proc.pid, signal.SIGCONT)
