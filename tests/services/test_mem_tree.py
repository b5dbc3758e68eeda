"""Memory-tree handlers on real SQLite and PostgreSQL: the cascade, idempotence, fencing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from memtasks.domain.clock import FrozenClock
from memtasks.domain.errors import UnknownJobKind
from memtasks.domain.jobs import FailureClass, JobKind, JobStatus, NewJob
from memtasks.domain.text_models import HashingEmbedder, TextModels
from memtasks.domain.tree import (
    TreeConfig,
    append_chunk_job,
    extract_chunk_job,
    flush_stale_job,
    reembed_backfill_job,
    seal_document_job,
    seal_job,
)
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry, MemTreeRunner, Outcome
from memtasks.services.mem_tree.handlers import CODE_CHUNK_MISSING, CODE_ITEM_MISSING
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import (
    mem_tree_buffer_items,
    mem_tree_buffers,
    mem_tree_chunks,
    mem_tree_summaries,
)
from memtasks.storage.tables import mem_tree_jobs
from memtasks.storage.tree_repo import NewChunk, TreeStore
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

CONFIG = TreeConfig(fanout=8, stale_after_ms=60_000)


def make_runner(
    engine: Engine,
    jobs: MemTreeJobs,
    clock: FrozenClock,
    *,
    registry: HandlerRegistry | None = None,
    models: TextModels | None = None,
    config: TreeConfig = CONFIG,
) -> MemTreeRunner:
    return MemTreeRunner(
        engine,
        jobs,
        registry=registry or HandlerRegistry.default(),
        models=models or TextModels(),
        config=config,
        clock=clock,
    )


def add_chunks(
    engine: Engine, clock: FrozenClock, count: int, *, tree: str = "t1", docs: int = 10
) -> list[str]:
    ids = [f"c{i:05d}" for i in range(count)]
    TreeStore(engine, clock=clock).add_chunks(
        [
            NewChunk(
                id=chunk_id,
                tree_id=tree,
                source_id=f"s{i % 7}",
                doc_id=f"doc{i % docs}",
                content=f"Alice met Bob in Paris on day {i}. They talked about memory number {i}.",
            )
            for i, chunk_id in enumerate(ids)
        ]
    )
    return ids


def drain_concurrently(runner: MemTreeRunner, workers: int) -> int:
    """Run jobs from ``workers`` threads until a full round finds nothing to do."""
    total = 0
    while True:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ran = sum(len(r) for r in pool.map(lambda _: runner.drain(), range(workers)))
        total += ran
        if ran == 0:
            return total


def quiesce(runner: MemTreeRunner, clock: FrozenClock, *, workers: int = 1, rounds: int = 40) -> None:
    """Run everything, then flush stale buffers, until a flush seals nothing."""
    for _ in range(rounds):
        drain_concurrently(runner, workers)
        clock.advance(CONFIG.stale_after_ms + 1)
        flush_id = runner.jobs.enqueue(flush_stale_job(clock()))
        assert flush_id is not None
        result = runner.run_by_id(flush_id)
        assert result is not None and result.outcome is Outcome.DONE
        if not result.followups:
            assert drain_concurrently(runner, workers) == 0
            return
    raise AssertionError(f"the tree did not settle in {rounds} flush rounds")


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in conn.execute(select(table)))
            for table in (mem_tree_chunks, mem_tree_summaries, mem_tree_buffers, mem_tree_buffer_items)
        }


def job_rows(engine: Engine, kind: JobKind | None = None) -> list[Any]:
    stmt = select(mem_tree_jobs)
    if kind is not None:
        stmt = stmt.where(mem_tree_jobs.c.kind == kind.value)
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def enqueue_all(jobs: MemTreeJobs, new: list[NewJob]) -> list[str]:
    ids = jobs.enqueue_many(new)
    assert all(ids)
    return [i for i in ids if i is not None]


# ── the cascade ──────────────────────────────────────────────────────────────


def test_a_thousand_chunks_cascade_into_one_tree(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    chunk_ids = add_chunks(engine, clock, 1000)
    enqueue_all(jobs, [extract_chunk_job(c) for c in chunk_ids])
    runner = make_runner(engine, jobs, clock)

    quiesce(runner, clock, workers=4)

    rows = job_rows(engine)
    assert {r.status for r in rows} == {JobStatus.DONE.value}
    with engine.connect() as conn:
        summaries = {r.id: r for r in conn.execute(select(mem_tree_summaries))}
        chunks = {r.id: r for r in conn.execute(select(mem_tree_chunks))}
        buffered = list(conn.execute(select(mem_tree_buffer_items)))
    roots = [s for s in summaries.values() if s.parent_id is None]
    assert len(roots) == 1, "exactly one top summary"
    root = roots[0]
    # The only item left in a buffer is the top summary itself.
    assert [(b.level, b.item_id) for b in buffered] == [(root.level, root.id)]

    seen: list[str] = []

    def walk(summary_id: str, level: int) -> None:
        summary = summaries[summary_id]
        assert summary.level == level
        children = json.loads(summary.child_ids_json)
        assert 1 <= len(children) <= CONFIG.fanout
        for child in children:
            if level == 1:
                assert chunks[child].summary_id == summary_id
                seen.append(child)
            else:
                assert summaries[child].parent_id == summary_id
                walk(child, level - 1)

    walk(root.id, root.level)
    assert sorted(seen) == sorted(chunk_ids), "every chunk reachable from the top summary exactly once"
    all_children = [c for s in summaries.values() for c in json.loads(s.child_ids_json)]
    assert len(all_children) == len(set(all_children)), "no item in two summaries"
    assert all(c.extracted_at_ms is not None and c.embedding_model for c in chunks.values())
    assert all(s.embedding_model == HashingEmbedder().model for s in summaries.values())


def test_running_every_job_again_changes_nothing(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    chunk_ids = add_chunks(engine, clock, 150)
    enqueue_all(jobs, [extract_chunk_job(c) for c in chunk_ids])
    runner = make_runner(engine, jobs, clock)
    quiesce(runner, clock)
    before = snapshot(engine)
    done = job_rows(engine)

    # The same messages delivered again: nothing is claimable.
    assert all(runner.run_by_id(row.id) is None for row in done[:50])
    # The same jobs enqueued and run again: every handler is a no-op the second time.
    enqueue_all(jobs, [NewJob(JobKind(row.kind), json.loads(row.payload_json)) for row in done])
    results = runner.drain()
    assert len(results) == len(done)
    assert {r.outcome for r in results} == {Outcome.DONE}
    assert not [r for r in results if r.followups]
    assert snapshot(engine) == before


def test_the_same_cascade_gives_the_same_tree(tmp_path: Any, clock: FrozenClock) -> None:
    from memtasks.storage.engine import get_engine

    trees = []
    for name in ("a", "b"):
        engine = get_engine(f"sqlite:///{tmp_path}/{name}.sqlite3")
        local_clock = FrozenClock(clock.now_ms)
        queue = MemTreeJobs(engine, clock=local_clock)
        enqueue_all(queue, [extract_chunk_job(c) for c in add_chunks(engine, local_clock, 100)])
        quiesce(make_runner(engine, queue, local_clock), local_clock)
        trees.append(snapshot(engine)["mem_tree_summaries"])
    assert trees[0] == trees[1]


# ── rollback: a raising handler, a fenced-out handler ────────────────────────


def _two_chunks_waiting_for_a_seal(engine: Engine, jobs: MemTreeJobs, clock: FrozenClock) -> str:
    add_chunks(engine, clock, 2)
    runner = make_runner(engine, jobs, clock, config=TreeConfig(fanout=2))
    enqueue_all(jobs, [append_chunk_job("t1", "c00000", "s0"), append_chunk_job("t1", "c00001", "s1")])
    assert [r.outcome for r in runner.drain(kinds=[JobKind.APPEND_BUFFER])] == [Outcome.DONE] * 2
    [seal_row] = job_rows(engine, JobKind.SEAL)
    return str(seal_row.id)


def boom_after(handler: Callable[[HandlerContext, Mapping[str, Any]], Defer | None]) -> Any:
    def wrapped(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
        handler(ctx, payload)
        raise RuntimeError("boom after writing")

    return wrapped


def test_a_handler_that_raises_after_writing_rolls_back(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    seal_id = _two_chunks_waiting_for_a_seal(engine, jobs, clock)
    before = snapshot(engine)
    registry = HandlerRegistry.default().wrap(JobKind.SEAL, boom_after)
    runner = make_runner(engine, jobs, clock, registry=registry, config=TreeConfig(fanout=2))

    result = runner.run_by_id(seal_id)

    assert result is not None and result.outcome is Outcome.RETRY
    assert result.followups == ()
    assert snapshot(engine) == before, "no summary, no parent pointer, items still buffered"
    assert job_rows(engine, JobKind.APPEND_BUFFER) and len(job_rows(engine)) == 3, "no follow-up committed"
    row = jobs.get(seal_id)
    assert row is not None
    assert (row.status, row.attempts, row.failure_class) == ("ready", 1, FailureClass.TRANSIENT.value)
    assert row.last_error == "RuntimeError: boom after writing"

    clock.advance(60_000)
    fixed = make_runner(engine, jobs, clock, config=TreeConfig(fanout=2))
    again = fixed.run_by_id(seal_id)
    assert again is not None and again.outcome is Outcome.DONE and len(again.followups) == 1
    assert len(snapshot(engine)["mem_tree_summaries"]) == 1


def test_a_fenced_out_handler_rolls_back(engine: Engine, jobs: MemTreeJobs, clock: FrozenClock) -> None:
    seal_id = _two_chunks_waiting_for_a_seal(engine, jobs, clock)
    before = snapshot(engine)
    runner = make_runner(engine, jobs, clock, config=TreeConfig(fanout=2))

    stale = jobs.claim(seal_id)
    assert stale is not None
    clock.advance(jobs.config.lease_ms + 1)
    assert jobs.recover_expired().requeued == [seal_id]
    current = jobs.claim(seal_id)
    assert current is not None and current.lease_token != stale.lease_token

    late = runner.run(stale)

    assert late.outcome is Outcome.FENCED
    assert snapshot(engine) == before, "the stale worker's summary and pointers rolled back"
    assert len(job_rows(engine)) == 3, "its follow-up append rolled back"
    row = jobs.get(seal_id)
    assert row is not None and (row.status, row.lease_token) == ("running", current.lease_token)

    assert runner.run(current).outcome is Outcome.DONE
    assert len(snapshot(engine)["mem_tree_summaries"]) == 1


def test_a_fenced_out_handler_that_raises_changes_nothing(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    seal_id = _two_chunks_waiting_for_a_seal(engine, jobs, clock)
    registry = HandlerRegistry.default().wrap(JobKind.SEAL, boom_after)
    runner = make_runner(engine, jobs, clock, registry=registry, config=TreeConfig(fanout=2))
    stale = jobs.claim(seal_id)
    assert stale is not None
    clock.advance(jobs.config.lease_ms + 1)
    jobs.recover_expired()
    current = jobs.claim(seal_id)
    assert current is not None

    assert runner.run(stale).outcome is Outcome.FENCED
    row = jobs.get(seal_id)
    assert row is not None and (row.status, row.last_error) == ("running", None)


# ── bad input ────────────────────────────────────────────────────────────────


def test_a_missing_chunk_fails_once_as_unrecoverable(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    [job_id] = enqueue_all(jobs, [extract_chunk_job("nope")])
    result = make_runner(engine, jobs, clock).run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.FAILED
    row = jobs.get(job_id)
    assert row is not None
    assert (row.status, row.attempts, row.failure_class, row.failure_reason) == (
        "failed",
        1,
        FailureClass.UNRECOVERABLE.value,
        CODE_CHUNK_MISSING,
    )
    assert "'nope' does not exist" in (row.last_error or "")


def test_appending_an_unknown_item_names_it(engine: Engine, jobs: MemTreeJobs, clock: FrozenClock) -> None:
    [job_id] = enqueue_all(
        jobs, [NewJob(JobKind.APPEND_BUFFER, {"tree_id": "t", "level": 2, "item_id": "x"})]
    )
    result = make_runner(engine, jobs, clock).run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.FAILED
    assert result.error is not None and "no item 'x' at level 2 of tree 't'" in result.error
    row = jobs.get(job_id)
    assert row is not None and row.failure_reason == CODE_ITEM_MISSING
    assert snapshot(engine)["mem_tree_buffers"] == [], "the failed append left no buffer behind"


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        (JobKind.EXTRACT_CHUNK, {}, "chunk_id"),
        (JobKind.APPEND_BUFFER, {"tree_id": "t", "level": -1, "item_id": "x"}, "level"),
        (JobKind.SEAL, {"tree_id": "t", "level": 0, "force": "yes"}, "force"),
        (JobKind.FLUSH_STALE, {"older_than_ms": 0}, "older_than_ms"),
        (JobKind.REEMBED_BACKFILL, {"batch": "10"}, "batch"),
        (JobKind.SEAL_DOCUMENT, {"tree_id": "t"}, "doc_id"),
    ],
)
def test_a_malformed_payload_fails_as_unrecoverable_naming_the_field(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock, kind: JobKind, payload: dict[str, Any], field: str
) -> None:
    [job_id] = enqueue_all(jobs, [NewJob(kind, payload)])
    result = make_runner(engine, jobs, clock).run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.FAILED
    assert result.error is not None and repr(field) in result.error
    row = jobs.get(job_id)
    assert row is not None
    assert (row.failure_class, row.failure_reason) == (
        FailureClass.UNRECOVERABLE.value,
        "job.payload.malformed",
    )


# ── each handler ─────────────────────────────────────────────────────────────


def test_extract_writes_entities_keywords_and_embedding_once(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    add_chunks(engine, clock, 1)
    runner = make_runner(engine, jobs, clock)
    [job_id] = enqueue_all(jobs, [extract_chunk_job("c00000")])
    result = runner.run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.DONE and len(result.followups) == 1
    [chunk] = snapshot(engine)["mem_tree_chunks"]
    row = dict(zip(mem_tree_chunks.c.keys(), chunk, strict=True))
    assert json.loads(row["entities_json"]) == ["Alice", "Bob", "Paris"], "stopwords are not entities"
    assert "memory" in json.loads(row["keywords_json"])
    assert row["embedding_model"] == "hashing-64" and len(json.loads(row["embedding_json"])) == 64
    assert row["extracted_at_ms"] == clock()

    [followup] = result.followups
    appended = jobs.get(followup.job_id)
    assert appended is not None and appended.parent_id == job_id, "a follow-up names the job that enqueued it"
    assert [j.id for j in jobs.admin.followups(job_id)] == [followup.job_id]
    parent = jobs.get(job_id)
    assert parent is not None and parent.parent_id is None, "a producer's job has no parent"

    clock.advance(1_000)
    again = runner.run_by_id(enqueue_all(jobs, [extract_chunk_job("c00000")])[0])
    assert again is not None and again.outcome is Outcome.DONE
    assert again.followups == (), "the append is already queued: deduped"
    assert snapshot(engine)["mem_tree_chunks"] == [chunk]


def test_flush_seals_a_lone_chunk_but_not_a_lone_top_summary(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    add_chunks(engine, clock, 1)
    runner = make_runner(engine, jobs, clock)
    enqueue_all(jobs, [extract_chunk_job("c00000")])
    quiesce(runner, clock)
    summaries = snapshot(engine)["mem_tree_summaries"]
    assert len(summaries) == 1, "the chunk got its level-1 summary, which is the top"
    assert [(r.kind, json.loads(r.payload_json).get("force")) for r in job_rows(engine, JobKind.SEAL)] == [
        ("seal", True)
    ]


def test_seal_document_seals_only_that_documents_chunks(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    chunk_ids = add_chunks(engine, clock, 5, docs=2)  # doc0: c0, c2, c4 — doc1: c1, c3
    runner = make_runner(engine, jobs, clock)
    enqueue_all(jobs, [append_chunk_job("t1", c, "s") for c in chunk_ids])
    runner.drain()
    result = runner.run_by_id(enqueue_all(jobs, [seal_document_job("t1", "doc0", "v1")])[0])
    assert result is not None and result.outcome is Outcome.DONE and len(result.followups) == 1
    with engine.connect() as conn:
        [summary] = conn.execute(select(mem_tree_summaries)).all()
        left = conn.execute(select(mem_tree_buffer_items.c.item_id)).scalars().all()
    assert (summary.doc_id, summary.level) == ("doc0", 1)
    assert json.loads(summary.child_ids_json) == ["c00000", "c00002", "c00004"]
    assert sorted(left) == ["c00001", "c00003"]


def test_a_seal_of_a_partial_buffer_waits_unless_forced(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    chunk_ids = add_chunks(engine, clock, 11)
    runner = make_runner(engine, jobs, clock)
    enqueue_all(jobs, [append_chunk_job("t1", c, "s") for c in chunk_ids])
    runner.drain(kinds=[JobKind.APPEND_BUFFER])
    [seal_row] = job_rows(engine, JobKind.SEAL)  # one seal job for the full buffer, deduped
    runner.run_by_id(seal_row.id)
    assert len(snapshot(engine)["mem_tree_summaries"]) == 1
    assert len(snapshot(engine)["mem_tree_buffer_items"]) == 3
    unforced = runner.run_by_id(enqueue_all(jobs, [seal_job("t1", 0)])[0])
    assert unforced is not None and unforced.followups == ()
    forced = runner.run_by_id(enqueue_all(jobs, [seal_job("t1", 0, force=True)])[0])
    assert forced is not None and len(forced.followups) == 1
    assert snapshot(engine)["mem_tree_buffers"] == [], "an emptied buffer is dropped"


def test_reembed_backfill_defers_between_batches_without_spending_attempts(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    enqueue_all(jobs, [extract_chunk_job(c) for c in add_chunks(engine, clock, 30)])
    quiesce(make_runner(engine, jobs, clock), clock)
    new_model = HashingEmbedder(dimensions=16, name="small")
    runner = make_runner(engine, jobs, clock, models=TextModels(embedder=new_model))
    [job_id] = enqueue_all(jobs, [NewJob(JobKind.REEMBED_BACKFILL, {"model": new_model.model, "batch": 20})])

    first = runner.run_by_id(job_id)
    assert first is not None and first.outcome is Outcome.DEFERRED and first.attempts == 0
    results = runner.drain()
    assert [r.outcome for r in results][-1] is Outcome.DONE
    row = jobs.get(job_id)
    assert row is not None and (row.status, row.attempts) == ("done", 1)
    with engine.connect() as conn:
        models = set(conn.execute(select(mem_tree_chunks.c.embedding_model)).scalars())
        models |= set(conn.execute(select(mem_tree_summaries.c.embedding_model)).scalars())
    assert models == {"small-16"}
    assert reembed_backfill_job("small-16").max_attempts is None  # the queue applies its cap of 3


# ── the registry ─────────────────────────────────────────────────────────────


def test_the_registry_can_be_overridden_and_wrapped_without_touching_the_default() -> None:
    default = HandlerRegistry.default()
    calls: list[str] = []

    def mine(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
        calls.append("mine")
        return None

    custom = default.override(JobKind.SEAL, mine, llm_bound=False)
    assert custom[JobKind.SEAL].handler is mine and not custom.llm_bound(JobKind.SEAL)
    assert default[JobKind.SEAL].handler is not mine and default.llm_bound(JobKind.SEAL)
    assert {k for k in default if default.llm_bound(k)} == {
        JobKind.EXTRACT_CHUNK,
        JobKind.SEAL,
        JobKind.REEMBED_BACKFILL,
        JobKind.SEAL_DOCUMENT,
    }
    assert set(default) == set(JobKind)
    with pytest.raises(UnknownJobKind, match="'topic_route'"):
        default["topic_route"]  # type: ignore[index]


def test_an_overriding_handler_runs_in_the_jobs_transaction(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    def seal_and_enqueue(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
        ctx.enqueue(extract_chunk_job("from-handler"))
        return Defer(ctx.now() + 5_000, "waiting for a model")

    registry = HandlerRegistry.default().override(JobKind.SEAL, seal_and_enqueue)
    runner = make_runner(engine, jobs, clock, registry=registry)
    [job_id] = enqueue_all(jobs, [seal_job("t1", 0)])
    result = runner.run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.DEFERRED and len(result.followups) == 1
    row = jobs.get(job_id)
    assert row is not None
    assert (row.status, row.attempts, row.available_at_ms) == ("ready", 0, clock() + 5_000)
    assert [r.payload_json for r in job_rows(engine, JobKind.EXTRACT_CHUNK)] == [
        '{"chunk_id":"from-handler"}'
    ]


# ── batches (the drain task) ─────────────────────────────────────────────────


def test_a_batch_settles_together_and_isolates_a_raising_handler(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    chunk_ids = add_chunks(engine, clock, 6)
    enqueue_all(jobs, [extract_chunk_job(c) for c in chunk_ids])

    def fail_on_c3(handler: Callable[[HandlerContext, Mapping[str, Any]], Defer | None]) -> Any:
        def wrapped(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
            result = handler(ctx, payload)
            if payload["chunk_id"] == "c00003":
                raise RuntimeError("boom after writing")
            return result

        return wrapped

    registry = HandlerRegistry.default().wrap(JobKind.EXTRACT_CHUNK, fail_on_c3)
    runner = make_runner(engine, jobs, clock, registry=registry)
    claimed = jobs.claim_batch(10, kinds=[JobKind.EXTRACT_CHUNK])
    results = runner.run_batch(claimed)

    assert sorted(r.outcome.value for r in results) == ["done"] * 5 + ["retry"]
    assert sum(len(r.followups) for r in results) == 5, "the failed job's follow-up rolled back with it"
    with engine.connect() as conn:
        extracted = dict(conn.execute(select(mem_tree_chunks.c.id, mem_tree_chunks.c.extracted_at_ms)).all())
    assert extracted["c00003"] is None, "its savepoint rolled back"
    assert all(extracted[c] is not None for c in chunk_ids if c != "c00003")
    failed = next(r for r in results if r.outcome is Outcome.RETRY)
    row = jobs.get(failed.job_id)
    assert row is not None and (row.status, row.attempts) == ("ready", 1)


def test_a_batch_with_a_lost_lease_falls_back_to_one_by_one(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    enqueue_all(jobs, [seal_job(f"t{i}", 0) for i in range(3)])
    claimed = jobs.claim_batch(3)
    stolen = claimed[1]
    clock.advance(jobs.config.lease_ms + 1)
    jobs.recover_expired()
    current = jobs.claim(stolen.id)
    assert current is not None
    # The other two leases expired as well; renew them as a heartbeat would have.
    for job in (claimed[0], claimed[2]):
        recovered = jobs.claim(job.id)
        assert recovered is not None
    fresh = [jobs.get(job.id) for job in claimed]
    batch = [fresh[0], claimed[1], fresh[2]]
    results = make_runner(engine, jobs, clock).run_batch([j for j in batch if j is not None])
    assert [r.outcome for r in results] == [Outcome.DONE, Outcome.FENCED, Outcome.DONE]
    row = jobs.get(stolen.id)
    assert row is not None and (row.status, row.lease_token) == ("running", current.lease_token)


def test_an_append_racing_a_seal_that_empties_the_buffer_still_holds_a_buffer(
    pg_schema: str, clock: FrozenClock
) -> None:
    """The seal locks the buffer; the append's insert finds the row and waits on the lock;
    the seal deletes the emptied row and commits. The append must end up holding a buffer
    row of its own — not write an item into a buffer that no flush will ever find."""
    # PostgreSQL only: SQLite serialises writers, so the race cannot happen there.
    from memtasks.storage.engine import get_engine

    engine = get_engine(pg_schema)
    store = TreeStore(engine, clock=clock)
    with engine.begin() as conn:
        store.lock_buffer(conn, "race", 0)
    sealer = engine.connect()
    sealer_tx = sealer.begin()
    store.lock_buffer(sealer, "race", 0)

    appender_done = threading.Event()
    appender_held: list[bool] = []

    def append() -> None:
        with engine.begin() as conn:
            store.lock_buffer(conn, "race", 0)
            held = conn.execute(select(mem_tree_buffers).where(mem_tree_buffers.c.tree_id == "race")).first()
            appender_held.append(held is not None)
        appender_done.set()

    thread = threading.Thread(target=append)
    thread.start()

    def appender_waits_on_the_lock() -> bool:
        with engine.connect() as probe:
            return bool(
                probe.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar_one()
            )

    wait_for(appender_waits_on_the_lock, timeout=10)
    sealer.execute(mem_tree_buffers.delete().where(mem_tree_buffers.c.tree_id == "race"))
    sealer_tx.commit()
    sealer.close()
    assert appender_done.wait(10)
    thread.join()
    assert appender_held == [True]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mem_tree_buffers)).scalar_one() == 1


# ── the transaction begins on first use ──────────────────────────────────────


def count_begins(engine: Engine) -> list[int]:
    begins = [0]

    def on_begin(conn: Any) -> None:
        begins[0] += 1

    event.listen(engine, "begin", on_begin)
    return begins


def test_a_handler_that_writes_nothing_costs_no_transaction(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    registry = HandlerRegistry.default().override(JobKind.SEAL, lambda ctx, payload: None)
    runner = make_runner(engine, jobs, clock, registry=registry)
    ids = enqueue_all(jobs, [seal_job(f"quiet{i}", 0) for i in range(3)])
    begins = count_begins(engine)
    one = runner.run_by_id(ids[0])
    batch = runner.run_batch(jobs.claim_batch(10))
    assert begins[0] == 0, "no transaction was opened for handlers that never touched ctx.conn"
    assert one is not None and one.outcome is Outcome.DONE
    assert [r.outcome for r in batch] == [Outcome.DONE, Outcome.DONE]
    assert {row.status for row in (jobs.get(i) for i in ids) if row} == {JobStatus.DONE}


def test_a_handler_that_writes_commits_its_write_with_the_settle_and_a_fenced_one_does_not(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS effects (job_id VARCHAR(80))"))

    def write(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
        ctx.conn.execute(text("INSERT INTO effects (job_id) VALUES (:id)"), {"id": ctx.job.id})
        return None

    registry = HandlerRegistry.default().override(JobKind.SEAL, write)
    runner = make_runner(engine, jobs, clock, registry=registry)
    kept, fenced = enqueue_all(jobs, [seal_job("kept", 0), seal_job("fenced", 0)])
    begins = count_begins(engine)
    result = runner.run_by_id(kept)
    assert result is not None and result.outcome is Outcome.DONE and begins[0] == 1
    stale = jobs.claim(fenced)
    assert stale is not None
    clock.advance(jobs.config.lease_ms + 1)
    jobs.recover_expired()
    assert jobs.claim(fenced) is not None, "taken over by another worker"
    assert runner.run(stale).outcome is Outcome.FENCED
    with engine.connect() as conn:
        written = conn.execute(text("SELECT job_id FROM effects")).scalars().all()
    assert written == [kept], "the fenced handler's write rolled back with its settle"


def test_a_drain_leaves_no_due_row_behind_and_says_when_it_stopped_early(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    """A drain message is not tied to rows: another claim may take rows of its burst. Draining
    until a batch comes back short leaves none of them waiting for a message already spent."""
    registry = HandlerRegistry.default().override(JobKind.SEAL, lambda ctx, payload: None)
    runner = make_runner(engine, jobs, clock, registry=registry)
    ids = enqueue_all(jobs, [seal_job(f"burst{i}", 0) for i in range(25)])
    results, emptied = runner.drain_until_empty([JobKind.SEAL], 10)
    assert emptied and len(results) == 25, "three batches: 10, 10, 5"
    assert {row.status for row in (jobs.get(i) for i in ids) if row} == {JobStatus.DONE}
    enqueue_all(jobs, [seal_job(f"more{i}", 0) for i in range(25)])
    results, emptied = runner.drain_until_empty([JobKind.SEAL], 10, seconds=0)
    assert not emptied and len(results) == 10, "out of time after one full batch: a new message carries on"
