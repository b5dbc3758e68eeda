"""Queue semantics of mem_tree_jobs on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql

from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, FrozenClock
from memtasks.domain.dedupe import REEMBED_BACKFILL_MAX_ATTEMPTS
from memtasks.domain.errors import JobNotFound, MalformedPayload, UnknownJobKind
from memtasks.domain.jobs import FailureClass, JobKind, JobStatus, Lease, NewJob
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue import MEM_TREE, QueueConfig
from memtasks.storage.queue.insert import UNNEST_CHUNK, Inserter
from memtasks.storage.tables import ACTIVE_WHERE, mem_tree_jobs
from tests.helpers import all_at_once

pytestmark = pytest.mark.integration


def job(kind: JobKind = JobKind.APPEND_BUFFER, key: str | None = None, **payload: Any) -> NewJob:
    return NewJob(kind, payload or {"n": 1}, dedupe_key=key)


def raw_row(engine, **overrides: Any) -> None:  # type: ignore[no-untyped-def]
    row = {
        "id": "job:raw",
        "kind": "append_buffer",
        "priority": 3,
        "payload_json": "{}",
        "status": "ready",
        "attempts": 0,
        "max_attempts": 5,
        "available_at_ms": 0,
        "created_at_ms": 0,
    } | overrides
    with engine.begin() as c:
        c.execute(insert(mem_tree_jobs).values(row))


def test_claim_sets_lease_and_attempt(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    job_id = jobs.enqueue(job())
    assert job_id is not None and job_id.startswith("job:")
    claimed = jobs.claim_next()
    assert claimed is not None
    assert claimed.id == job_id
    assert claimed.status is JobStatus.RUNNING
    assert claimed.attempts == 1
    assert claimed.started_at_ms == clock.now_ms
    assert claimed.locked_until_ms == clock.now_ms + 5 * MINUTE_MS
    assert claimed.lease_token is not None and len(claimed.lease_token) == 32
    assert jobs.claim_next() is None


def test_lease_tokens_are_random(jobs: MemTreeJobs) -> None:
    jobs.enqueue_many([job(n=i) for i in range(2)])
    first, second = jobs.claim_next(), jobs.claim_next()
    assert first is not None and second is not None
    assert first.lease_token != second.lease_token


def test_claim_order_is_kind_priority_then_place(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    for kind in [JobKind.EXTRACT_CHUNK, JobKind.APPEND_BUFFER, JobKind.SEAL, JobKind.FLUSH_STALE]:
        jobs.enqueue(job(kind))
        clock.advance(1)
    # Alone in its lane, a job due earlier takes its place at its due time: before the rest.
    older = jobs.enqueue(
        NewJob(JobKind.REEMBED_BACKFILL, {}, available_at_ms=clock.now_ms - 10_000, fair_key="agent-b")
    )
    order = []
    while (claimed := jobs.claim_next()) is not None:
        order.append((claimed.kind, claimed.id))
    kinds = [k for k, _ in order]
    assert kinds[:3] == ["seal", "flush_stale", "append_buffer"]
    assert order[3] == ("reembed_backfill", older)
    assert kinds[4] == "extract_chunk"


def test_batch_claim_respects_priority_and_limit(jobs: MemTreeJobs) -> None:
    jobs.enqueue_many([job(JobKind.EXTRACT_CHUNK, n=i) for i in range(5)] + [job(JobKind.SEAL)])
    batch = jobs.claim_batch(3)
    assert len(batch) == 3
    assert batch[0].kind == "seal"
    assert len({b.lease_token for b in batch}) == 1
    assert jobs.admin.count_by_state()[JobStatus.RUNNING] == 3


def test_claim_filters_by_kind(jobs: MemTreeJobs) -> None:
    jobs.enqueue_many([job(JobKind.SEAL), job(JobKind.EXTRACT_CHUNK)])
    claimed = jobs.claim_next(kinds=[JobKind.EXTRACT_CHUNK])
    assert claimed is not None and claimed.kind == "extract_chunk"


def test_future_jobs_wait_until_due(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.SEAL, {}, available_at_ms=clock.now_ms + 1_000))
    assert job_id is not None
    assert jobs.claim_next() is None
    assert jobs.claim(job_id) is None
    clock.advance(1_000)
    claimed = jobs.claim(job_id)
    assert claimed is not None and claimed.id == job_id
    assert jobs.claim(job_id) is None, "a running row is not claimable again"


def test_claim_by_id_of_missing_job_is_none(jobs: MemTreeJobs) -> None:
    assert jobs.claim("job:nope") is None


def test_retired_kinds_are_never_claimed_and_are_purged(jobs: MemTreeJobs, engine) -> None:  # type: ignore[no-untyped-def]
    raw_row(engine, id="job:old1", kind="topic_route")
    raw_row(engine, id="job:old2", kind="digest_daily")
    assert jobs.claim_next() is None
    assert jobs.claim("job:old1") is None
    assert jobs.purge_retired() == 2
    assert jobs.admin.count_total() == 0


def test_unknown_kind_is_refused_at_enqueue() -> None:
    with pytest.raises(UnknownJobKind, match="'topic_route'"):
        NewJob("topic_route", {})  # type: ignore[arg-type]


def test_bad_rows_never_break_the_claim_loop(jobs: MemTreeJobs, engine) -> None:  # type: ignore[no-untyped-def]
    raw_row(engine, id="job:mystery", kind="mystery_kind", priority=0)
    raw_row(engine, id="job:garbled", payload_json="{not json", priority=0)
    raw_row(engine, id="job:list", payload_json="[1, 2]", priority=0)
    good = jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None and claimed.id == good
    for bad_id, reason, fragment in [
        ("job:mystery", "unknown_kind", "unknown job kind 'mystery_kind'"),
        ("job:garbled", "malformed_payload", "invalid JSON"),
        ("job:list", "malformed_payload", "expected a JSON object"),
    ]:
        row = jobs.get(bad_id)
        assert row is not None
        assert row.status is JobStatus.FAILED
        assert row.failure_class is FailureClass.UNRECOVERABLE
        assert row.failure_reason == reason
        assert row.last_error is not None and fragment in row.last_error
        assert row.attempts == 1


def test_claim_by_id_of_bad_row_names_it(jobs: MemTreeJobs, engine) -> None:  # type: ignore[no-untyped-def]
    raw_row(engine, id="job:mystery", kind="mystery_kind")
    with pytest.raises(UnknownJobKind, match="mystery_kind"):
        jobs.claim("job:mystery")
    row = jobs.get("job:mystery")
    assert row is not None and row.status is JobStatus.FAILED
    assert jobs.claim("job:mystery") is None, "a failed bad row is not retried"


def test_dedupe_key_suppresses_while_active(jobs: MemTreeJobs) -> None:
    first = jobs.enqueue(job(key="seal:t1:0"))
    assert first is not None
    assert jobs.enqueue(job(key="seal:t1:0")) is None
    claimed = jobs.claim_next()
    assert claimed is not None
    assert jobs.enqueue(job(key="seal:t1:0")) is None, "running rows hold the key too"
    assert jobs.settle_done(claimed.lease)
    second = jobs.enqueue(job(key="seal:t1:0"))
    assert second is not None and second != first


def test_enqueue_many_dedupes_within_and_across_batches(jobs: MemTreeJobs) -> None:
    jobs.enqueue(job(key="k0"))
    ids = jobs.enqueue_many([job(key="k0"), job(key="k1"), job(key="k1"), job(), job()])
    assert ids[0] is None
    assert ids[1] is not None and ids[2] is None
    assert ids[3] is not None and ids[4] is not None
    assert jobs.admin.count_total() == 4


def test_enqueue_many_writes_what_enqueue_writes_across_insert_chunks(
    jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    """More rows than one batch statement carries; every column as a single enqueue sets it."""
    kinds = list(JobKind)
    new = [
        NewJob(
            kinds[i % len(kinds)],
            {"n": i, "text": 'it\'s "quoted" — ünïcode'},
            dedupe_key=None if i % 3 else f"key:{i % 900}",
            max_attempts=None if i % 2 else 7,
            available_at_ms=None if i % 5 else clock() + i,
        )
        for i in range(UNNEST_CHUNK + 2_500)
    ]
    ids = jobs.enqueue_many(new, published=True)
    keyed = [i for i in range(len(new)) if i % 3 == 0]
    assert sum(i is not None for i in ids) == len(new) - len(keyed) + len({i % 900 for i in keyed})
    with jobs.engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(select(mem_tree_jobs))}
    assert len(stored) == sum(i is not None for i in ids)
    for made, job_id in zip(new, ids, strict=True):
        if job_id is None:
            continue
        row, kind = stored[job_id], JobKind(made.kind)
        available = clock() if made.available_at_ms is None else made.available_at_ms
        default_max = (
            REEMBED_BACKFILL_MAX_ATTEMPTS if kind is JobKind.REEMBED_BACKFILL else jobs.config.max_attempts
        )
        assert (row.kind, row.priority, row.payload_json, row.dedupe_key, row.status) == (
            kind.value,
            kind.priority,
            made.payload_json,
            made.dedupe_key,
            "ready",
        )
        assert (
            row.attempts,
            row.max_attempts,
            row.available_at_ms,
            row.created_at_ms,
            row.updated_at_ms,
        ) == (
            0,
            made.max_attempts or default_max,
            available,
            clock(),
            clock(),
        )
        assert row.dispatched_at_ms == (clock() if available <= clock() else None)
        assert UUID(job_id.removeprefix("job:")).version == 7


def test_the_postgresql_batch_insert_names_every_new_row_column_and_the_dedupe_predicate(
    jobs: MemTreeJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: dict[str, tuple[str, ...]] = {}

    def capture(self: Inserter, engine: Any, rows: Any, conn: Any, shared: Any = None, **_: Any) -> set[str]:
        sent.update(columns=tuple(rows[0]), shared=tuple(shared or {}))
        return set()

    monkeypatch.setattr(Inserter, "insert", capture)
    jobs.enqueue_many([NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0})])
    columns, shared = sent["columns"], sent["shared"]
    assert set(columns) | set(shared) >= {
        *("id", "kind", "priority", "payload_json", "dedupe_key", "status", "attempts"),
        *("max_attempts", "available_at_ms", "created_at_ms", "updated_at_ms", "dispatched_at_ms"),
    }
    assert {"status", "attempts", "created_at_ms", "updated_at_ms"} <= set(shared), "sent once, not per row"
    stmt = Inserter(MEM_TREE)._statement("postgresql", columns, shared)
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert ACTIVE_WHERE in sql, "ON CONFLICT must infer the partial unique dedupe index"
    for name in columns:
        assert f"unnest(%({name})s::" in sql, name
    for name in shared:
        assert f"%({name})s" in sql and f"unnest(%({name})s" not in sql, name


def test_fifty_concurrent_enqueues_one_active_row(jobs: MemTreeJobs) -> None:
    results = all_at_once(50, lambda: jobs.enqueue(job(key="extract:chunk-1")))
    inserted = [r for r in results if r is not None]
    assert len(results) == 50
    assert len(inserted) == 1
    assert jobs.admin.count_by_state()[JobStatus.READY] == 1
    claimed = jobs.claim_next()
    assert claimed is not None and jobs.settle_done(claimed.lease)
    assert jobs.enqueue(job(key="extract:chunk-1")) is not None


def test_enqueue_inside_callers_transaction(jobs: MemTreeJobs, engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn, conn.begin() as tx:
        assert jobs.enqueue(job(), conn=conn) is not None
        tx.rollback()
    assert jobs.admin.count_total() == 0
    with engine.begin() as conn:
        job_id = jobs.enqueue(job(), conn=conn)
    assert job_id is not None and jobs.get(job_id) is not None


def test_stale_token_settle_changes_nothing(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue(job())
    first = jobs.claim_next()
    assert first is not None
    clock.advance(5 * MINUTE_MS + 1)
    recovered = jobs.recover_expired()
    assert recovered.requeued == [first.id]
    second = jobs.claim_next()
    assert second is not None and second.id == first.id
    assert second.lease_token != first.lease_token
    before = jobs.get(first.id)
    assert not jobs.settle_done(first.lease)
    assert jobs.settle_failed(first.lease, "late failure") is None
    assert jobs.settle_deferred(first.lease, clock.now_ms + 1) is None
    assert not jobs.heartbeat(first.lease)
    assert jobs.release([first.lease]) == 0
    assert jobs.settle_done_many([first.lease]) == 0
    assert jobs.get(first.id) == before
    assert jobs.settle_done(second.lease)
    done = jobs.get(first.id)
    assert done is not None and done.status is JobStatus.DONE and done.attempts == 2


def test_backoff_doubles_and_caps(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    queue = MemTreeJobs(engine, clock=clock, config=QueueConfig(policy=RetryPolicy(jitter=0)))
    job_id = queue.enqueue(NewJob(JobKind.SEAL, {}, max_attempts=9))
    delays = []
    for _ in range(8):
        claimed = queue.claim_next()
        assert claimed is not None and claimed.id == job_id
        outcome = queue.settle_failed(claimed.lease, "model timed out")
        assert outcome is not None and not outcome.terminal and outcome.retry_at_ms is not None
        delays.append((outcome.retry_at_ms - clock.now_ms) // SECOND_MS)
        row = queue.get(claimed.id)
        assert row is not None and row.available_at_ms == outcome.retry_at_ms
        assert row.status is JobStatus.READY and row.last_error == "model timed out"
        assert queue.claim_next() is None, "not due before its backoff"
        clock.now_ms = outcome.retry_at_ms
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    last = queue.claim_next()
    assert last is not None
    outcome = queue.settle_failed(last.lease, "still timing out")
    assert outcome is not None and outcome.terminal
    row = queue.get(last.id)
    assert row is not None and row.status is JobStatus.FAILED and row.attempts == 9
    assert row.failure_reason == "attempts_exhausted"
    assert row.failure_class is FailureClass.TRANSIENT


def test_backoff_jitter_stays_within_its_fraction(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    queue = MemTreeJobs(
        engine, clock=clock, config=QueueConfig(policy=RetryPolicy(jitter=0.1)), random=lambda: 0.999
    )
    queue.enqueue(job())
    claimed = queue.claim_next()
    assert claimed is not None
    outcome = queue.settle_failed(claimed.lease, "boom")
    assert outcome is not None and outcome.retry_at_ms is not None
    delay = outcome.retry_at_ms - clock.now_ms
    assert 60 * SECOND_MS < delay < 66 * SECOND_MS


def test_unrecoverable_failure_is_terminal_on_first_attempt(jobs: MemTreeJobs) -> None:
    jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None
    outcome = jobs.settle_failed(claimed.lease, "embedding dimension mismatch", FailureClass.UNRECOVERABLE)
    assert outcome is not None and outcome.terminal
    row = jobs.get(claimed.id)
    assert row is not None and row.status is JobStatus.FAILED and row.attempts == 1
    assert row.failure_class is FailureClass.UNRECOVERABLE
    assert row.failure_reason == "embedding dimension mismatch"
    assert jobs.admin.count_unrecoverable() == 1


def test_deferral_refunds_the_attempt(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None and claimed.attempts == 1
    outcome = jobs.settle_deferred(claimed.lease, clock.now_ms + 30 * SECOND_MS, reason="llm busy")
    assert outcome is not None and not outcome.terminal
    row = jobs.get(claimed.id)
    assert row is not None
    assert row.status is JobStatus.READY and row.attempts == 0
    assert row.available_at_ms == clock.now_ms + 30 * SECOND_MS


def test_deferral_is_refused_after_the_age_cap(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue(job())
    clock.advance(7 * DAY_MS + 1)
    claimed = jobs.claim_next()
    assert claimed is not None
    outcome = jobs.settle_deferred(claimed.lease, clock.now_ms + 1_000)
    assert outcome is not None and outcome.terminal
    row = jobs.get(claimed.id)
    assert row is not None and row.status is JobStatus.FAILED
    assert row.failure_reason == "defer_age_exceeded"
    assert row.failure_class is FailureClass.UNRECOVERABLE


def test_recover_expired_requeues_or_fails(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue(NewJob(JobKind.SEAL, {}, max_attempts=1))
    jobs.enqueue(job(n=1))
    jobs.enqueue(job(n=2))
    spent = jobs.claim_next()  # the seal: priority first, one attempt only
    retry = jobs.claim_next()
    assert spent is not None and spent.kind == "seal" and retry is not None
    held = jobs.claim_next(lease_ms=HOUR_MS)
    assert held is not None
    clock.advance(5 * MINUTE_MS + 1)
    result = jobs.recover_expired()
    assert result.requeued == [retry.id] and result.failed == [spent.id]
    row = jobs.get(retry.id)
    assert row is not None and row.status is JobStatus.READY
    assert row.last_error == "recovered_from_stale_lock" and row.lease_token is None
    failed = jobs.get(spent.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.failure_reason == "lease_expired_attempts_exhausted"
    still = jobs.get(held.id)
    assert still is not None and still.status is JobStatus.RUNNING, "an unexpired lease is kept"
    assert jobs.recover_expired().requeued == []


def test_heartbeat_extends_the_lease(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None
    clock.advance(4 * MINUTE_MS)
    assert jobs.heartbeat(claimed.lease)
    clock.advance(4 * MINUTE_MS)
    assert jobs.recover_expired().requeued == []
    row = jobs.get(claimed.id)
    assert row is not None and row.heartbeat_at_ms == clock.now_ms - 4 * MINUTE_MS


def test_graceful_release_refunds_the_attempt(jobs: MemTreeJobs) -> None:
    jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None
    assert jobs.release([claimed.lease]) == 1
    row = jobs.get(claimed.id)
    assert row is not None and row.status is JobStatus.READY and row.attempts == 0
    assert jobs.claim_next() is not None


def test_requeue_transient_only_leaves_unrecoverable(jobs: MemTreeJobs) -> None:
    jobs.enqueue_many([NewJob(JobKind.APPEND_BUFFER, {"n": i}, max_attempts=1) for i in range(3)])
    classes = [FailureClass.TRANSIENT, FailureClass.UNRECOVERABLE, FailureClass.TRANSIENT]
    ids = []
    for cls in classes:
        claimed = jobs.claim_next()
        assert claimed is not None
        outcome = jobs.settle_failed(claimed.lease, "boom", cls)
        assert outcome is not None and outcome.terminal
        ids.append(claimed.id)
    with jobs.engine.begin() as c:  # a row failed by an older version: no class recorded
        c.execute(update(mem_tree_jobs).where(mem_tree_jobs.c.id == ids[2]).values(failure_class=None))
    assert jobs.admin.count_by_state()[JobStatus.FAILED] == 3
    assert jobs.admin.count_unrecoverable() == 1
    assert jobs.admin.requeue_failed(transient_only=True) == 2
    assert jobs.admin.count_by_state()[JobStatus.FAILED] == 1
    assert jobs.admin.count_unrecoverable() == 1
    assert jobs.admin.requeue_failed() == 1
    counts = jobs.admin.count_by_state()
    assert counts[JobStatus.READY] == 3 and counts[JobStatus.FAILED] == 0
    row = jobs.claim_next()
    assert row is not None and row.attempts == 1 and row.failure_class is None


def test_requeue_never_breaks_the_dedupe_index(jobs: MemTreeJobs) -> None:
    for _ in range(2):
        jobs.enqueue(job(key="seal:t:1"))
        claimed = jobs.claim_next()
        assert claimed is not None
        jobs.settle_failed(claimed.lease, "bad", FailureClass.UNRECOVERABLE)
    jobs.enqueue(job(key="seal:t:2"))
    claimed = jobs.claim_next()
    assert claimed is not None
    jobs.settle_failed(claimed.lease, "bad", FailureClass.UNRECOVERABLE)
    active = jobs.enqueue(job(key="seal:t:2"))
    assert active is not None
    assert jobs.admin.requeue_failed() == 1, "one of the two seal:t:1 rows; seal:t:2 is held by an active row"
    with jobs.engine.connect() as c:
        keys = (
            c.execute(select(mem_tree_jobs.c.dedupe_key).where(mem_tree_jobs.c.status == "ready"))
            .scalars()
            .all()
        )
    assert sorted(keys) == ["seal:t:1", "seal:t:2"]


def test_batch_settle_done(jobs: MemTreeJobs) -> None:
    jobs.enqueue_many([job(n=i) for i in range(7)])
    first = jobs.claim_batch(4)
    second = jobs.claim_batch(4)
    leases = [j.lease for j in first + second]
    assert jobs.settle_done_many(leases) == 7
    assert jobs.settle_done_many(leases) == 0
    assert jobs.admin.count_by_state()[JobStatus.DONE] == 7


def test_cancel_and_cancel_pending(jobs: MemTreeJobs) -> None:
    a = jobs.enqueue(job(JobKind.SEAL))
    jobs.enqueue_many([job(JobKind.EXTRACT_CHUNK, n=i) for i in range(3)])
    assert a is not None
    assert jobs.admin.cancel(a)
    assert not jobs.admin.cancel(a), "already cancelled"
    with pytest.raises(JobNotFound, match="job:missing"):
        jobs.admin.cancel("job:missing")
    assert jobs.admin.cancel_ready(kind=JobKind.EXTRACT_CHUNK) == 3
    assert jobs.admin.count_by_state()[JobStatus.CANCELLED] == 4
    assert jobs.claim_next() is None


def test_prune_finished_respects_retention(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue_many([job(n=i) for i in range(5)])
    for claimed in jobs.claim_batch(3):
        jobs.settle_done(claimed.lease)
    clock.advance(15 * DAY_MS)
    recent = jobs.claim_next()
    assert recent is not None and jobs.settle_done(recent.lease)
    assert jobs.admin.prune_finished(14 * DAY_MS, batch=2) == 3
    counts = jobs.admin.count_by_state()
    assert counts[JobStatus.DONE] == 1 and counts[JobStatus.READY] == 1


def test_malformed_payload_is_refused_at_enqueue() -> None:
    with pytest.raises(MalformedPayload, match="not JSON-serialisable"):
        NewJob(JobKind.SEAL, {"x": object()})
    with pytest.raises(MalformedPayload, match="JSON object"):
        NewJob(JobKind.SEAL, [1, 2])  # type: ignore[arg-type]


def test_settle_inside_callers_transaction_rolls_back_with_it(jobs: MemTreeJobs, engine) -> None:  # type: ignore[no-untyped-def]
    jobs.enqueue(job())
    claimed = jobs.claim_next()
    assert claimed is not None
    with engine.connect() as conn:
        tx = conn.begin()
        assert jobs.settle_done(claimed.lease, conn=conn)
        follow = jobs.enqueue(job(JobKind.SEAL), conn=conn)
        assert follow is not None
        tx.rollback()
    row = jobs.get(claimed.id)
    assert row is not None and row.status is JobStatus.RUNNING
    assert jobs.get(follow) is None
    assert isinstance(claimed.lease, Lease)


def test_a_claim_changes_exactly_the_rows_it_returns(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    """Regression: ``IN (SELECT … LIMIT n SKIP LOCKED)`` may be re-run per row on PostgreSQL."""
    jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"i": i}, available_at_ms=i) for i in range(20)])
    jobs.enqueue(job(JobKind.SEAL))
    assert jobs.claim_next() is not None
    assert jobs.admin.count_by_state()[JobStatus.RUNNING] == 1
    assert len(jobs.claim_batch(5)) == 5
    assert jobs.admin.count_by_state()[JobStatus.RUNNING] == 6
