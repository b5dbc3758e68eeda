"""The queue contract, for both job tables on both databases: one engine, one set of promises.

Every case runs against ``mem_tree_jobs`` and ``decay_jobs`` (their adapters over
``memtasks.storage.queue``), on a real SQLite file and a real PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

import pytest

from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import DAY_MS, FrozenClock
from memtasks.domain.jobs import FailureClass, Lease
from memtasks.domain.lifecycle import Phase
from memtasks.storage.engine import get_engine
from memtasks.storage.queue import QueueConfig
from tests.helpers import all_at_once
from tests.storage.queue_subjects import TABLES, Subject, claim_until_empty, subject

pytestmark = pytest.mark.integration

BASE_MS, CAP_MS = 1_000, 5_000
CONFIG = QueueConfig(
    lease_ms=10_000, policy=RetryPolicy(base_ms=BASE_MS, cap_ms=CAP_MS, jitter=0), defer_max_age_ms=DAY_MS
)


@pytest.fixture(params=TABLES)
def table(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def q(table: str, engine, clock: FrozenClock) -> Subject:  # type: ignore[no-untyped-def]
    return subject(table, engine, clock=clock, config=CONFIG)


def phase(q: Subject, job_id: str) -> Phase:
    return q.table.words.phase(q.word(job_id))


@pytest.mark.slow
def test_four_processes_claim_each_job_exactly_once(db_url: str, table: str, engine) -> None:  # type: ignore[no-untyped-def]
    q = subject(table, engine)
    ids = q.add(1_000)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    claimers = [
        ctx.Process(target=claim_until_empty, args=(db_url, table, 7, start, results)) for _ in range(4)
    ]
    for claimer in claimers:
        claimer.start()
    per_process = [results.get(timeout=120) for _ in claimers]
    for claimer in claimers:
        claimer.join(timeout=30)
        assert claimer.exitcode == 0
    claimed = Counter(job_id for ids_ in per_process for job_id in ids_)
    assert set(claimed) == set(ids), "no job lost"
    assert max(claimed.values()) == 1, "no job claimed twice"
    assert sum(1 for ids_ in per_process if ids_) >= 2, "the work was shared"
    assert q.queue.admin.count_by_state()[q.table.word(Phase.DONE)] == 1_000


def test_fifty_concurrent_enqueues_of_one_dedupe_key_make_one_row(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    q = subject("mem_tree", engine, clock=clock)
    results = all_at_once(50, lambda: q.add(key="seal:t:0"))
    assert sum(len(ids) for ids in results) == 1
    assert q.queue.admin.count_total() == 1


def test_decay_jobs_have_no_dedupe_key(engine) -> None:  # type: ignore[no-untyped-def]
    """The seed gives decay jobs none: fifty enqueues at once are fifty jobs."""
    q = subject("decay", engine)
    assert q.table.dedupe is None
    assert len({job_id for ids in all_at_once(50, q.add) for job_id in ids}) == 50


def test_a_stale_token_changes_nothing(q: Subject, clock: FrozenClock) -> None:
    [job_id] = q.add()
    first = q.queue.claim_by_id(job_id)
    assert first is not None
    clock.advance(CONFIG.lease_ms + 1)
    assert q.queue.recover_expired().requeued == [job_id]
    second = q.queue.claim_by_id(job_id)
    assert second is not None and second.lease.token != first.lease.token
    before = q.row(job_id)
    stale = first.lease
    assert q.queue.heartbeat(stale) is False
    assert q.queue.settle_done(stale) is False
    assert q.queue.settle_done_many([stale]) == 0
    assert q.queue.settle_failed(stale, "late", FailureClass.UNRECOVERABLE) is None
    assert q.queue.settle_failed(stale, "late") is None
    assert q.queue.settle_deferred(stale, clock() + 1_000) is None
    assert q.queue.release([stale]) == 0
    assert q.row(job_id) == before, "the stale worker changed nothing"
    assert q.queue.settle_done(second.lease) is True


def test_recovery_proceeds_past_a_row_locked_by_a_stalled_settle(
    db_url: str, q: Subject, clock: FrozenClock
) -> None:
    """PostgreSQL: the locked row is skipped, the rest recovered at once, the locked one by the
    next sweep. SQLite: a transaction holds the whole file's write lock, so recovery waits —
    within its busy timeout — and then recovers both."""
    stalled_id, other_id = q.add(2)
    assert q.queue.claim_by_id(stalled_id) is not None and q.queue.claim_by_id(other_id) is not None
    clock.advance(CONFIG.lease_ms + 1)
    engine = q.queue.engine
    result: list[list[str]] = []
    recovery = threading.Thread(target=lambda: result.append(q.queue.recover_expired().requeued), daemon=True)
    with engine.connect() as holder:  # a settle that took the row lock, then stalled
        t = q.sa_table
        holder.execute(t.update().where(t.c.id == stalled_id).values(heartbeat_at_ms=t.c.heartbeat_at_ms))
        recovery.start()
        recovery.join(timeout=5)
        waited = recovery.is_alive()
        holder.rollback()
    recovery.join(timeout=20)
    assert not recovery.is_alive(), "recovery finished"
    if engine.dialect.name == "postgresql":
        assert not waited, "recovery waited for the stalled row's lock"
        assert result == [[other_id]]
        assert q.queue.recover_expired().requeued == [stalled_id], "the next sweep takes it once free"
    else:
        assert waited, "SQLite serialises writers: recovery waited for the write lock"
        assert sorted(result[0]) == sorted([stalled_id, other_id])


def test_the_backoff_sequence_and_its_cap(q: Subject, clock: FrozenClock) -> None:
    """min(base × 2^(attempt−1), cap) after each transient failure, until the attempts are spent."""
    [job_id] = q.add(max_attempts=6) if q.name == "mem_tree" else q.add()
    attempts = q.row(job_id)["max_attempts"]
    assert attempts >= 5
    delays = []
    for attempt in range(1, attempts + 1):
        job = q.queue.claim_by_id(job_id)
        assert job is not None, f"attempt {attempt} is claimable once its backoff passed"
        assert job.attempts == attempt
        outcome = q.queue.settle_failed(job.lease, f"boom {attempt}")
        assert outcome is not None
        if attempt == attempts:
            assert outcome.terminal and outcome.retry_at_ms is None
            break
        assert not outcome.terminal and outcome.retry_at_ms is not None
        delays.append(outcome.retry_at_ms - clock())
        assert q.row(job_id)["last_backoff_ms"] == delays[-1]
        assert q.queue.claim_by_id(job_id) is None, "not before its backoff"
        clock.advance(delays[-1])
    expected = [min(BASE_MS * 2 ** (n - 1), CAP_MS) for n in range(1, attempts)]
    assert delays == expected
    row = q.row(job_id)
    assert phase(q, job_id) is Phase.FAILED
    assert row["failure_class"] == "transient" and row["last_error"] == f"boom {attempts}"
    assert row[q.table.reason], "a failed job says why"


def test_an_unrecoverable_failure_is_terminal_at_once(q: Subject) -> None:
    [job_id] = q.add()
    job = q.queue.claim_by_id(job_id)
    assert job is not None
    outcome = q.queue.settle_failed(job.lease, "bad input", FailureClass.UNRECOVERABLE, reason="x.bad")
    assert outcome is not None and outcome.terminal and outcome.attempts == 1
    assert phase(q, job_id) is Phase.FAILED and q.row(job_id)[q.table.reason] == "x.bad"
    assert q.queue.admin.requeue_failed(transient_only=True) == 0, "self-heal leaves it failed"


def test_a_deferral_refunds_the_attempt_and_the_age_cap_fails_it(q: Subject, clock: FrozenClock) -> None:
    [job_id] = q.add()
    job = q.queue.claim_by_id(job_id)
    assert job is not None
    deferred = q.queue.settle_deferred(job.lease, clock() + 30_000, reason="waiting for the buffer")
    assert deferred is not None and not deferred.terminal
    assert deferred.retry_at_ms == clock() + 30_000 and deferred.attempts == 0
    row = q.row(job_id)
    assert phase(q, job_id) is Phase.READY and row["attempts"] == 0 and row[q.table.due] == clock() + 30_000
    assert q.queue.claim_by_id(job_id) is None, "not before its time"
    clock.advance(CONFIG.defer_max_age_ms + 1)
    job = q.queue.claim_by_id(job_id)
    assert job is not None
    aged = q.queue.settle_deferred(job.lease, clock() + 30_000, reason="still waiting")
    assert aged is not None and aged.terminal
    row = q.row(job_id)
    assert phase(q, job_id) is Phase.FAILED and row["failure_class"] == "unrecoverable"
    assert row[q.table.reason] == q.table.reason_word("defer_age")


def test_a_graceful_release_hands_the_job_back_at_once(q: Subject, clock: FrozenClock) -> None:
    ids = q.add(3)
    held = [q.queue.claim_by_id(job_id) for job_id in ids]
    assert all(held)
    assert q.queue.release([job.lease for job in held if job is not None]) == 3
    for job_id in ids:
        row = q.row(job_id)
        assert phase(q, job_id) is Phase.READY and row["attempts"] == 0 and row["lease_token"] is None
        assert row[q.table.due] <= clock()
    assert len(q.queue.claim_batch(10)) == 3, "claimable again at once"


def test_recovery_fails_a_job_whose_attempts_are_spent(q: Subject, clock: FrozenClock) -> None:
    [job_id] = q.add(max_attempts=1) if q.name == "mem_tree" else q.add()
    for _ in range(q.row(job_id)["max_attempts"]):
        assert q.queue.claim_by_id(job_id) is not None
        clock.advance(CONFIG.lease_ms + 1)
        q.queue.recover_expired()
    row = q.row(job_id)
    assert phase(q, job_id) is Phase.FAILED
    assert row[q.table.reason] == q.table.reason_word("lease_exhausted")


def test_a_requeue_never_breaks_the_dedupe_index(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    q = subject("mem_tree", engine, clock=clock, config=CONFIG)
    older, newer = q.add(key="k"), []
    job = q.queue.claim_by_id(older[0])
    assert job is not None
    q.queue.settle_failed(job.lease, "x", FailureClass.UNRECOVERABLE)
    clock.advance(1_000)
    newer = q.add(key="k")
    job = q.queue.claim_by_id(newer[0])
    assert job is not None
    q.queue.settle_failed(job.lease, "y", FailureClass.UNRECOVERABLE)
    [active] = q.add(key="k")
    assert q.queue.admin.requeue_failed() == 0, "an active row holds the key"
    job = q.queue.claim_by_id(active)
    assert job is not None and q.queue.settle_done(job.lease)
    assert q.queue.admin.requeue_failed() == 1, "of two failed rows sharing a key, one returns"
    assert phase(q, newer[0]) is Phase.READY and phase(q, older[0]) is Phase.FAILED
    assert q.add(key="k") == [], "the requeued row holds the key"


def test_heartbeats_keep_a_lease_and_only_the_holders(q: Subject, clock: FrozenClock) -> None:
    [job_id] = q.add()
    job = q.queue.claim_by_id(job_id)
    assert job is not None
    clock.advance(CONFIG.lease_ms - 1)
    assert q.queue.heartbeat(job.lease)
    clock.advance(CONFIG.lease_ms - 1)
    assert q.queue.recover_expired().requeued == []
    assert q.queue.heartbeat(Lease(job_id, "not-the-token")) is False


def test_the_database_clock_decides_without_one_injected(db_url: str, table: str) -> None:
    """Production binds no clock: claims, leases and due times all read the database's time."""
    q = subject(table, get_engine(db_url), config=CONFIG)
    [job_id] = q.add()
    job = q.queue.claim_by_id(job_id)
    assert job is not None
    now = q.queue.clock()
    row = q.row(job_id)
    assert abs(row["started_at_ms"] - now) < 5_000
    assert row["locked_until_ms"] - row["started_at_ms"] == CONFIG.lease_ms
    assert q.queue.settle_done(job.lease)
