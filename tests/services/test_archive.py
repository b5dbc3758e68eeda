"""Reversible pruning on a real SQLite file and a real PostgreSQL, the lock in a real Redis.

A consolidation archives exactly what its dry run listed; a restore brings every row back
byte for byte, once, never over a row that holds the id now and never into a conversation the
agent deleted; the purge deletes only rows past the grace; the finished-job prune archives too.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, Table, delete, insert, select

from memtasks.config import load_settings
from memtasks.domain.clock import DAY_MS, HOUR_MS, FrozenClock
from memtasks.domain.jobs import JobKind
from memtasks.domain.tree import flush_stale_job
from memtasks.locks import RedisLockGate
from memtasks.services.maintenance import Maintenance
from memtasks.services.runtime import open_runtime
from memtasks.storage.archive_repo import ArchiveRepo
from memtasks.storage.archive_tables import archived_mem_tree_jobs, archived_messages, archived_outcomes
from memtasks.storage.consolidation_repo import ConsolidationRepo
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.memory_tables import conversations, messages, outcomes
from memtasks.storage.tables import mem_tree_jobs
from tests.services.test_consolidation import NOW_MS, OLD_MS, add_conversations, add_outcomes, make

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def rows_of(engine: Engine, table: Table, *where: Any) -> dict[Any, dict[str, Any]]:
    with engine.connect() as c:
        return {r.id: dict(r._mapping) for r in c.execute(select(table).where(*where))}


def seed(engine: Engine) -> None:
    """Two old closed conversations (5 messages each, odd metadata and text), one active one,
    and 7 outcomes of one sender (3 beyond the 4 kept)."""
    for conv_id in add_conversations(engine, 2, status="closed", started_at_ms=OLD_MS, prefix="old"):
        with engine.begin() as c:
            c.execute(
                insert(messages),
                [
                    {
                        "conversation_id": conv_id,
                        "role": "user" if i % 2 else "assistant",
                        "content": f"{conv_id} · m{i} — «ünïcode» \n\t  ",
                        "timestamp_ms": OLD_MS + i,
                        "metadata_json": None if i % 2 else '{"k": [1, 2.5, null]}',
                    }
                    for i in range(5)
                ],
            )
    add_conversations(engine, 1, prefix="live")
    with engine.begin() as c:
        c.execute(
            insert(messages),
            [{"conversation_id": "live-0", "role": "user", "content": "x", "timestamp_ms": NOW_MS}],
        )
    add_outcomes(engine, "user1", [NOW_MS - i * HOUR_MS for i in range(7)])


def consolidate(engine: Engine, gate: RedisLockGate, clock: FrozenClock, **config: Any) -> Any:
    return make(engine, gate, clock, max_outcomes_per_sender=4, **config).prune("manual")


def test_a_run_archives_exactly_what_its_dry_run_listed(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    clock = FrozenClock(NOW_MS)
    before_messages, before_outcomes = rows_of(engine, messages), rows_of(engine, outcomes)
    plan = make(engine, gate, clock, max_outcomes_per_sender=4).dry_run(list_rows=True)
    assert plan.listed is not None and plan.archive_grace_days == 7.0
    assert len(plan.listed["messages"]) == 10 and len(plan.listed["outcomes"]) == 3
    assert (plan.messages_pruned, plan.outcomes_pruned) == (10, 3)

    report = consolidate(engine, gate, clock)

    assert (report.messages_pruned, report.outcomes_pruned) == (10, 3)
    archived = rows_of(engine, archived_messages)
    assert sorted(archived) == list(plan.listed["messages"])
    assert sorted(rows_of(engine, archived_outcomes)) == list(plan.listed["outcomes"])
    for row_id, row in archived.items():
        assert row.pop("run_id") == report.run_id and row.pop("archived_at_ms") == NOW_MS
        assert row == before_messages[row_id]
    assert set(rows_of(engine, messages)) == set(before_messages) - set(plan.listed["messages"])
    assert set(rows_of(engine, outcomes)) == set(before_outcomes) - set(plan.listed["outcomes"])


def test_a_restore_brings_every_row_back_byte_identical_and_only_once(
    engine: Engine, gate: RedisLockGate
) -> None:
    seed(engine)
    before_messages, before_outcomes = rows_of(engine, messages), rows_of(engine, outcomes)
    report = consolidate(engine, gate, FrozenClock(NOW_MS))
    archive = ArchiveRepo(engine)
    assert [(r.run_id, r.messages, r.outcomes) for r in archive.runs()] == [(report.run_id, 10, 3)]

    first = archive.restore_run(report.run_id, batch=3)

    assert first.restored == {"messages": 10, "outcomes": 3}
    assert (first.already_back, first.kept_conversation_gone, first.kept_id_taken) == (0, 0, 0)
    assert rows_of(engine, messages) == before_messages
    assert rows_of(engine, outcomes) == before_outcomes
    assert archive.counts()["messages"] == 0 and archive.counts()["outcomes"] == 0
    second = archive.restore_run(report.run_id)
    assert second.total_restored == 0 and second.already_back == 0
    assert rows_of(engine, messages) == before_messages


def test_two_restores_racing_restore_each_row_once(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    before = rows_of(engine, messages)
    report = consolidate(engine, gate, FrozenClock(NOW_MS))
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def restore() -> None:
        barrier.wait()
        results.append(ArchiveRepo(engine).restore_run(report.run_id, batch=2))

    threads = [threading.Thread(target=restore) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    assert sum(r.restored["messages"] for r in results) == 10
    assert sum(r.restored["outcomes"] for r in results) == 3
    assert rows_of(engine, messages) == before


def test_a_restore_never_resurrects_what_the_agent_deleted(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    report = consolidate(engine, gate, FrozenClock(NOW_MS))
    archive = ArchiveRepo(engine)
    with engine.begin() as c:  # the agent deletes one pruned conversation (its row and messages)
        c.execute(delete(conversations).where(conversations.c.id == "old-0"))

    done = archive.restore_run(report.run_id)

    assert done.restored == {"messages": 5, "outcomes": 3}
    assert done.kept_conversation_gone == 5
    assert {r["conversation_id"] for r in rows_of(engine, messages).values()} == {"old-1", "live-0"}
    # A restored message the agent deletes afterwards is not brought back by another restore.
    victim = min(i for i, r in rows_of(engine, messages).items() if r["conversation_id"] == "old-1")
    with engine.begin() as c:
        c.execute(delete(messages).where(messages.c.id == victim))
    again = archive.restore_run(report.run_id)
    assert again.total_restored == 0 and again.kept_conversation_gone == 5
    assert victim not in rows_of(engine, messages)


def test_a_row_holding_the_id_now_is_never_overwritten(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    report = consolidate(engine, gate, FrozenClock(NOW_MS))
    taken = min(rows_of(engine, archived_messages))
    with engine.begin() as c:  # another message now holds a pruned id (SQLite reuses ids)
        c.execute(
            insert(messages).values(
                id=taken, conversation_id="live-0", role="user", content="new", timestamp_ms=NOW_MS
            )
        )
    done = ArchiveRepo(engine).restore_run(report.run_id)
    assert done.restored["messages"] == 9 and done.kept_id_taken == 1
    assert rows_of(engine, messages)[taken]["content"] == "new"
    assert taken in rows_of(engine, archived_messages)


def test_an_identical_row_back_already_leaves_the_archive(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    report = consolidate(engine, gate, FrozenClock(NOW_MS))
    archived = rows_of(engine, archived_messages)
    first_id = min(archived)
    row = {k: v for k, v in archived[first_id].items() if k not in ("run_id", "archived_at_ms")}
    with engine.begin() as c:
        c.execute(insert(messages).values(row))
    done = ArchiveRepo(engine).restore_run(report.run_id)
    assert done.restored["messages"] == 9 and done.already_back == 1
    assert ArchiveRepo(engine).counts()["messages"] == 0


def test_a_conversations_messages_restore_alone(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    consolidate(engine, gate, FrozenClock(NOW_MS))
    done = ArchiveRepo(engine).restore_conversation("old-1")
    assert done.restored == {"messages": 5, "outcomes": 0}
    assert {r["conversation_id"] for r in rows_of(engine, archived_messages).values()} == {"old-0"}


def test_the_purge_deletes_only_rows_past_the_grace(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    clock = FrozenClock(NOW_MS)
    first = consolidate(engine, gate, clock)
    # A second run two days later archives two more outcomes.
    clock.advance(2 * DAY_MS)
    add_outcomes(engine, "user1", [clock.now_ms + i for i in range(2)])
    second = consolidate(engine, gate, clock)
    assert second.outcomes_pruned == 2
    archive = ArchiveRepo(engine, clock=clock)

    clock.advance(7 * DAY_MS - 2 * DAY_MS)  # the first run's grace is over; not the second's
    assert archive.purge(7 * DAY_MS) == {"messages": 0, "outcomes": 0, "mem_tree_jobs": 0, "decay_jobs": 0}
    clock.advance(1)
    purged = archive.purge(7 * DAY_MS, batch=4)
    assert purged["messages"] == 10 and purged["outcomes"] == 3
    left = rows_of(engine, archived_outcomes)
    assert len(left) == 2 and {r["run_id"] for r in left.values()} == {second.run_id}
    assert first.run_id not in {r.run_id for r in archive.runs()}


def test_a_grace_of_zero_deletes_at_once(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    report = consolidate(engine, gate, FrozenClock(NOW_MS), archive_grace_days=0)
    assert (report.messages_pruned, report.outcomes_pruned) == (10, 3)
    assert ArchiveRepo(engine).counts() == {"messages": 0, "outcomes": 0, "mem_tree_jobs": 0, "decay_jobs": 0}


def test_the_keyset_prune_archives_across_many_batches(engine: Engine, gate: RedisLockGate) -> None:
    seed(engine)
    repo = ConsolidationRepo(engine)
    listed = repo.prunable_message_ids(FrozenClock(NOW_MS)() - 30 * DAY_MS)
    report = consolidate(engine, gate, FrozenClock(NOW_MS), delete_batch_size=3)
    assert report.messages_pruned == 10
    assert sorted(rows_of(engine, archived_messages)) == listed


def test_finished_jobs_are_archived_then_restorable(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    jobs.enqueue_many([flush_stale_job(clock() + i * 4 * HOUR_MS) for i in range(4)])
    for claimed in jobs.claim_batch(3):
        assert claimed.kind == JobKind.FLUSH_STALE and jobs.settle_done(claimed.lease)
    before = rows_of(engine, mem_tree_jobs)
    done_ids = sorted(i for i, r in before.items() if r["status"] == "done")
    assert len(done_ids) == 3
    clock.advance(15 * DAY_MS)

    assert jobs.admin.prune_finished(14 * DAY_MS, archive=True, batch=2) == 3
    assert [r["status"] for r in rows_of(engine, mem_tree_jobs).values()] == ["ready"]
    archived = rows_of(engine, archived_mem_tree_jobs)
    assert sorted(archived) == done_ids
    assert all(r.pop("archived_at_ms") == clock() and r == before[i] for i, r in archived.items())
    repo = ArchiveRepo(engine)
    found = repo.archived_job(done_ids[0])
    assert found is not None and found[0] == "mem_tree_jobs"

    restored = repo.restore_job(done_ids[0])
    assert restored.restored == {"mem_tree_jobs": 1, "decay_jobs": 0}
    assert rows_of(engine, mem_tree_jobs)[done_ids[0]] == before[done_ids[0]]
    assert repo.restore_job(done_ids[0]).total_restored == 0
    assert repo.archived_job(done_ids[0]) is None


@pytest.mark.parametrize("grace_days", [7.0, 0.0])
def test_the_sweeps_archive_by_the_settings_and_purge_after_the_grace(
    db_url: str, monkeypatch: pytest.MonkeyPatch, grace_days: float
) -> None:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_ARCHIVE_GRACE_DAYS", str(grace_days))
    clock = FrozenClock(NOW_MS)
    runtime = open_runtime(load_settings(), clock=clock)
    runtime.jobs.enqueue_many([flush_stale_job(clock() + i * 4 * HOUR_MS) for i in range(3)])
    for claimed in runtime.jobs.claim_batch(3):
        assert runtime.jobs.settle_done(claimed.lease)
    maintenance = Maintenance(runtime, publisher=None, lock_client=None)  # type: ignore[arg-type]
    clock.advance(15 * DAY_MS)  # past the 14-day retention

    assert maintenance.prune_finished() == 3
    archive = ArchiveRepo(runtime.engine)
    assert archive.counts()["mem_tree_jobs"] == (3 if grace_days else 0)
    clock.advance(int(grace_days * DAY_MS))
    assert maintenance.purge_archive()["mem_tree_jobs"] == 0  # not past the grace yet
    clock.advance(1)
    assert maintenance.purge_archive()["mem_tree_jobs"] == (3 if grace_days else 0)
    assert archive.counts()["mem_tree_jobs"] == 0
