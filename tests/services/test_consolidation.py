"""Consolidation on a real SQLite file and a real PostgreSQL, with the lock in a real Redis.

Ports the seed's consolidator tests, then the time-gate edge cases, the session gate at
millisecond precision, deterministic and batched prunes, the dry run, the ledger, the
lock's release and renewal, and two processes racing for one run.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, event, func, insert, select

from memtasks.domain.clock import DAY_MS, HOUR_MS, SECOND_MS, FrozenClock
from memtasks.domain.errors import ValidationError
from memtasks.domain.gates import (
    LAST_CONSOLIDATED_KEY,
    SYSTEM_SENDER,
    ConsolidationConfig,
    Gate,
    RunOutcome,
)
from memtasks.locks import LockLost, LockUnavailable, RedisLockGate, redis_client
from memtasks.services.consolidation import Consolidator
from memtasks.storage.archive_repo import Stamp
from memtasks.storage.consolidation_repo import INTERRUPTED, Batch, ConsolidationRepo
from memtasks.storage.facts_repo import Facts
from memtasks.storage.memory_tables import conversations, facts, messages, outcomes
from tests.helpers import wait_for
from tests.services._consolidation_proc import consolidate_once

pytestmark = [pytest.mark.integration, pytest.mark.redis]

NOW_MS = FrozenClock().now_ms
NOW_S = NOW_MS // SECOND_MS
OLD_MS = NOW_MS - 31 * DAY_MS  # older than the default 30-day message age


# ── fixtures and data helpers ───────────────────────────────────────────────


def make(
    engine: Engine,
    gate: RedisLockGate,
    clock: FrozenClock,
    repo: ConsolidationRepo | None = None,
    **config: Any,
) -> Consolidator:
    return Consolidator(engine, gate, ConsolidationConfig(**config), clock, repo=repo)


def add_conversations(
    engine: Engine,
    count: int,
    *,
    started_at_ms: int = NOW_MS,
    status: str = "active",
    updated_at_ms: int | None = None,
    prefix: str = "conv",
    sender: str = "user1",
) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    rows = [
        {
            "id": conv_id,
            "channel": "test",
            "sender_id": sender,
            "status": status,
            "started_at_ms": started_at_ms,
            "updated_at_ms": started_at_ms if updated_at_ms is None else updated_at_ms,
            "last_activity_ms": started_at_ms,
        }
        for conv_id in ids
    ]
    if rows:
        with engine.begin() as c:
            c.execute(insert(conversations), rows)
    return ids


def add_messages(engine: Engine, conversation_id: str, count: int) -> None:
    rows = [
        {"conversation_id": conversation_id, "role": "user", "content": f"m{i}", "timestamp_ms": OLD_MS + i}
        for i in range(count)
    ]
    with engine.begin() as c:
        c.execute(insert(messages), rows)


def add_outcomes(engine: Engine, sender: str, timestamps: Sequence[int]) -> list[int]:
    """Insert outcomes in the given order; their ids, ascending."""
    ids = []
    with engine.begin() as c:
        for ts in timestamps:
            row = {
                "timestamp_ms": ts,
                "sender_id": sender,
                "domain": "test",
                "score": 1,
                "lesson": "l",
                "source": "s",
            }
            key = c.execute(insert(outcomes).values(row)).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
    return ids


def add_outcomes_bulk(engine: Engine, sender: str, count: int, timestamp_ms: int = NOW_MS) -> None:
    rows = [
        {
            "timestamp_ms": timestamp_ms + i,
            "sender_id": sender,
            "domain": "d",
            "score": 0,
            "lesson": "l",
            "source": "s",
        }
        for i in range(count)
    ]
    with engine.begin() as c:
        c.execute(insert(outcomes), rows)


def count_rows(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def outcome_ids(engine: Engine, sender: str) -> list[int]:
    with engine.connect() as c:
        query = select(outcomes.c.id).where(outcomes.c.sender_id == sender).order_by(outcomes.c.id)
        return [int(i) for i in c.execute(query).scalars()]


def stored_fact(engine: Engine) -> str | None:
    return Facts(engine).get(SYSTEM_SENDER, LAST_CONSOLIDATED_KEY)


def set_fact(engine: Engine, value: str) -> None:
    Facts(engine).upsert(SYSTEM_SENDER, LAST_CONSOLIDATED_KEY, value)


class StatementLog:
    """Records the SQL statements an engine executes while active."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def deletes_from(self, table: str) -> list[str]:
        """Statements that delete from ``table``: a DELETE, or one inside a WITH (the archive's move)."""
        needle = re.compile(rf"(^|\bAS \()DELETE FROM {table.upper()}\b")
        return [s for s in self.statements if needle.search(s.upper())]


# ── the seed's tests, ported ───────────────────────────────────────────────


def test_time_gate_passes_without_a_prior_run(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    add_conversations(engine, 5)
    report = make(engine, gate, clock).maybe_run()
    assert report.ran
    assert report.gates[1].gate is Gate.TIME and report.gates[1].passed
    assert "no previous run" in report.gates[1].reason


def test_time_gate_rejects_a_run_too_recent(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    set_fact(engine, str(NOW_S))
    add_conversations(engine, 10, started_at_ms=NOW_MS + 1)
    clock.advance(HOUR_MS)
    report = make(engine, gate, clock).maybe_run()
    assert not report.ran
    assert report.outcome is RunOutcome.SKIPPED
    assert report.decided_by is Gate.TIME
    assert stored_fact(engine) == str(NOW_S), "a skip writes no fact"


def test_time_gate_passes_an_old_run(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    set_fact(engine, str(NOW_S - 7_200))
    add_conversations(engine, 5, started_at_ms=NOW_MS - 3_600_000)
    report = make(engine, gate, clock, min_hours=1.0).maybe_run()
    assert report.ran, report.gates
    assert stored_fact(engine) == str(NOW_S)


def test_prune_on_an_empty_store_returns_zeros(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    report = make(engine, gate, clock).prune()
    assert report.ran
    assert (report.messages_pruned, report.outcomes_pruned) == (0, 0)


def test_session_gate_rejects_an_empty_store(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    report = make(engine, gate, clock, min_hours=0.0, min_sessions=5).maybe_run()
    assert not report.ran
    assert report.decided_by is Gate.SESSION
    assert report.gates[-1].detail["new_sessions"] == 0
    assert stored_fact(engine) is None


def test_state_is_persisted_after_a_run(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    add_conversations(engine, 6)
    report = make(engine, gate, clock, min_hours=0.0, min_sessions=5).maybe_run()
    assert report.ran, "expected consolidation to run"
    assert report.last_run_written
    assert stored_fact(engine) == str(NOW_S)


def test_lock_gate_prevents_concurrent_runs(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock, redis_url: str, lock_name: str
) -> None:
    conv = add_conversations(engine, 6, status="closed", updated_at_ms=OLD_MS)
    add_messages(engine, conv[0], 3)
    other_process = RedisLockGate(redis_client(redis_url), lock_name, ttl_s=30)
    with other_process.hold() as held:
        assert held
        report = make(engine, gate, clock, min_hours=0.0).maybe_run()
        assert held.owned(), "the rejected run left the holder's lock alone"
    assert not report.ran
    assert report.decided_by is Gate.LOCK
    assert len(report.gates) == 1, "no later gate is evaluated"
    assert count_rows(engine, messages) == 3, "nothing deleted"
    assert stored_fact(engine) is None


def test_prune_excess_outcomes_keeps_three_of_five(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    ids = add_outcomes(engine, "user1", [NOW_MS + i for i in range(5)])
    report = make(engine, gate, clock, max_outcomes_per_sender=3).prune()
    assert report.outcomes_pruned == 2
    assert outcome_ids(engine, "user1") == ids[2:], "the three newest survive"


# ── time-gate edge cases, through the store ────────────────────────────────


def test_a_last_run_in_the_future_is_rejected(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    set_fact(engine, str(NOW_S + 3_600))
    add_conversations(engine, 10)
    report = make(engine, gate, clock, min_hours=0.0).maybe_run()
    assert report.decided_by is Gate.TIME
    assert "future" in report.gates[-1].reason


def test_a_clock_before_1970_is_rejected(engine: Engine, gate: RedisLockGate) -> None:
    set_fact(engine, "1000")
    add_conversations(engine, 10, started_at_ms=-10_000)
    report = make(engine, gate, FrozenClock(-5_000), min_hours=0.0, min_sessions=0).maybe_run()
    assert report.decided_by is Gate.TIME
    assert "before 1970" in report.gates[-1].reason
    assert stored_fact(engine) == "1000"


def test_a_run_before_1970_without_a_prior_run_never_stores_a_pre_1970_time(
    engine: Engine, gate: RedisLockGate
) -> None:
    add_conversations(engine, 5, started_at_ms=-10_000)
    report = make(engine, gate, FrozenClock(-5_000)).maybe_run()
    assert report.ran
    assert not report.last_run_written
    assert stored_fact(engine) is None


def test_a_run_in_the_first_second_of_1970_stores_nothing(engine: Engine, gate: RedisLockGate) -> None:
    report = make(engine, gate, FrozenClock(999)).prune()
    assert report.ran and not report.last_run_written
    assert stored_fact(engine) is None, "0 is never stored"


def test_an_unparsable_fact_counts_as_absent(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    set_fact(engine, "yesterday")
    add_conversations(engine, 5, started_at_ms=0)
    report = make(engine, gate, clock).maybe_run()
    assert report.ran
    assert report.gates[1].detail["last_run_s"] is None
    assert report.gates[2].detail["new_sessions"] == 5, "all conversations count"
    assert stored_fact(engine) == str(NOW_S), "the bad value is replaced"


def test_a_stored_zero_counts_as_absent(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    set_fact(engine, "0")
    add_conversations(engine, 5, started_at_ms=0)
    report = make(engine, gate, clock).maybe_run()
    assert report.ran
    assert stored_fact(engine) == str(NOW_S)


# ── the session gate at full precision ─────────────────────────────────────


def test_session_gate_compares_at_millisecond_precision(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    last_s = NOW_S - 2 * 86_400
    last_ms = last_s * SECOND_MS
    set_fact(engine, str(last_s))
    add_conversations(engine, 1, started_at_ms=last_ms, prefix="exactly-at")
    add_conversations(engine, 3, started_at_ms=last_ms - 1, prefix="before")
    consolidator = make(engine, gate, clock, min_sessions=1)
    report = consolidator.maybe_run()
    assert report.decided_by is Gate.SESSION, "a conversation at exactly the last-run time does not count"
    assert report.gates[-1].detail["new_sessions"] == 0

    add_conversations(engine, 1, started_at_ms=last_ms + 1, prefix="one-ms-later")
    report = consolidator.maybe_run()
    assert report.ran, "a conversation started 1 ms after the last run counts"
    assert report.gates[-1].detail["new_sessions"] == 1


def test_session_gate_counts_every_sender(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    for sender in ("a", "b", "c"):
        add_conversations(engine, 2, prefix=sender, sender=sender)
    report = make(engine, gate, clock, min_sessions=6).maybe_run()
    assert report.ran
    assert report.gates[-1].detail["new_sessions"] == 6


# ── the prunes ─────────────────────────────────────────────────────────────


def test_only_old_messages_of_closed_conversations_are_pruned(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    cutoff = NOW_MS - 30 * DAY_MS
    (old_closed,) = add_conversations(
        engine, 1, status="closed", updated_at_ms=cutoff - 1, prefix="old-closed"
    )
    (at_cutoff,) = add_conversations(engine, 1, status="closed", updated_at_ms=cutoff, prefix="at-cutoff")
    (old_active,) = add_conversations(engine, 1, status="active", updated_at_ms=OLD_MS, prefix="old-active")
    (new_closed,) = add_conversations(engine, 1, status="closed", updated_at_ms=NOW_MS, prefix="new-closed")
    for conv in (old_closed, at_cutoff, old_active, new_closed):
        add_messages(engine, conv, 4)
    report = make(engine, gate, clock).prune()
    assert report.messages_pruned == 4
    assert count_rows(engine, messages, messages.c.conversation_id == old_closed) == 0
    for kept in (at_cutoff, old_active, new_closed):
        assert count_rows(engine, messages, messages.c.conversation_id == kept) == 4
    assert count_rows(engine, conversations) == 4, "conversation rows stay"


def test_messages_are_deleted_in_bounded_batches_each_its_own_transaction(engine: Engine) -> None:
    (conv,) = add_conversations(engine, 1, status="closed", updated_at_ms=OLD_MS)
    add_messages(engine, conv, 1_000)
    repo = ConsolidationRepo(engine)
    commits: list[int] = []

    def on_commit(_conn: Any) -> None:
        commits.append(1)

    event.listen(engine, "commit", on_commit)
    batches: list[int] = []
    try:
        total = repo.prune_messages(NOW_MS - 30 * DAY_MS, 100, batches.append)
    finally:
        event.remove(engine, "commit", on_commit)
    assert total == 1_000
    assert batches == [100] * 10
    assert len(commits) >= 10, "one transaction per batch"
    assert count_rows(engine, messages) == 0


def test_outcome_ties_are_broken_by_id_lower_ids_go_first(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    ids = add_outcomes(engine, "user1", [NOW_MS] * 5)
    report = make(engine, gate, clock, max_outcomes_per_sender=3).prune()
    assert report.outcomes_pruned == 2
    assert outcome_ids(engine, "user1") == ids[2:]


def test_outcomes_newest_first_whatever_the_insert_order(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    # Inserted newest first: ids ascend while timestamps descend.
    ids = add_outcomes(engine, "user1", [NOW_MS + 5, NOW_MS + 4, NOW_MS + 3, NOW_MS + 3, NOW_MS + 1])
    make(engine, gate, clock, max_outcomes_per_sender=3).prune()
    # Kept: ts+5, ts+4 and, of the two at ts+3, the higher id.
    assert outcome_ids(engine, "user1") == [ids[0], ids[1], ids[3]]


def test_one_statement_prunes_the_outcomes_of_every_sender(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    survivors = {}
    for n, sender in enumerate(("alice", "bob", "carol", "dave")):
        ids = add_outcomes(engine, sender, [NOW_MS - i for i in range(3 + n)])  # newest first
        survivors[sender] = ids[:3]
    with StatementLog(engine) as sql:
        report = make(engine, gate, clock, max_outcomes_per_sender=3, archive_grace_days=0).prune()
    assert report.outcomes_pruned == 0 + 1 + 2 + 3
    deletes = sql.deletes_from("outcomes")
    assert len(deletes) == 1, deletes
    assert "row_number() OVER (PARTITION BY outcomes.sender_id" in deletes[0]
    for sender, ids in survivors.items():
        assert outcome_ids(engine, sender) == sorted(ids)
    # Archiving (the default), one statement still ranks every sender; the batch moves by id.
    add_outcomes(engine, "erin", [NOW_MS - i for i in range(5)])
    with StatementLog(engine) as sql:
        report = make(engine, gate, clock, max_outcomes_per_sender=3).prune()
    assert report.outcomes_pruned == 2
    ranking = [s for s in sql.statements if "row_number() OVER (PARTITION BY outcomes.sender_id" in s]
    assert len(ranking) == 1, ranking


def test_batched_outcome_prune_keeps_the_same_survivors(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    expected = {}
    for sender in ("a", "b"):
        ids = add_outcomes(engine, sender, [NOW_MS] * 3 + [NOW_MS - 1] * 4)
        expected[sender] = ids[:3]
    with StatementLog(engine) as sql:
        report = make(engine, gate, clock, max_outcomes_per_sender=3, delete_batch_size=3).prune()
    assert report.outcomes_pruned == 8
    assert len(sql.deletes_from("outcomes")) == 3, "8 rows in batches of 3"
    assert {s: outcome_ids(engine, s) for s in expected} == expected


def test_keep_zero_outcomes_deletes_them_all(engine: Engine, gate: RedisLockGate, clock: FrozenClock) -> None:
    add_outcomes(engine, "user1", [NOW_MS] * 4)
    assert make(engine, gate, clock, max_outcomes_per_sender=0).prune().outcomes_pruned == 4
    assert count_rows(engine, outcomes) == 0


# ── the dry run ────────────────────────────────────────────────────────────


def test_a_dry_run_reports_what_the_real_run_deletes_and_deletes_nothing(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    closed = add_conversations(engine, 20, status="closed", updated_at_ms=OLD_MS, prefix="closed")
    active = add_conversations(engine, 5, status="active", updated_at_ms=OLD_MS, prefix="active")
    for conv in closed:
        add_messages(engine, conv, 450)  # 9,000 prunable
    for conv in active:
        add_messages(engine, conv, 200)  # 1,000 kept
    for n, sender in enumerate(("a", "b", "c")):
        add_outcomes_bulk(engine, sender, 150 + 50 * n)  # 50 + 100 + 150 excess
    assert count_rows(engine, messages) == 10_000
    consolidator = make(engine, gate, clock, min_hours=0.0, delete_batch_size=1_000)

    dry = consolidator.dry_run()
    assert dry.dry_run and dry.ran
    assert (dry.messages_pruned, dry.outcomes_pruned) == (9_000, 300)
    assert count_rows(engine, messages) == 10_000, "the dry run deleted nothing"
    assert count_rows(engine, outcomes) == 600
    assert stored_fact(engine) is None, "nor recorded a run"
    assert not gate.is_locked()

    real = consolidator.maybe_run()
    assert real.ran and not real.dry_run
    assert (real.messages_pruned, real.outcomes_pruned) == (dry.messages_pruned, dry.outcomes_pruned)
    assert count_rows(engine, messages) == 1_000
    assert count_rows(engine, outcomes) == 300
    assert consolidator.dry_run().messages_pruned == 0


def test_a_dry_run_reports_what_the_gates_would_decide(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    set_fact(engine, str(NOW_S))
    report = make(engine, gate, clock).dry_run()
    assert report.ran and report.dry_run
    assert report.decided_by is Gate.TIME
    assert [g.gate for g in report.gates] == [Gate.TIME, Gate.SESSION]


# ── the ledger ─────────────────────────────────────────────────────────────


def test_the_ledger_has_one_row_per_run_with_the_gate_decisions(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock, redis_url: str, lock_name: str
) -> None:
    repo = ConsolidationRepo(engine)
    consolidator = make(engine, gate, clock, min_hours=1.0, max_outcomes_per_sender=1)
    skipped = consolidator.maybe_run("beat")  # no conversations: session gate
    add_conversations(engine, 5)
    add_outcomes(engine, "user1", [NOW_MS, NOW_MS])
    ran = consolidator.maybe_run("beat")
    clock.advance(2 * HOUR_MS)
    with RedisLockGate(redis_client(redis_url), lock_name, ttl_s=30).hold():
        locked = consolidator.maybe_run("beat")
    dry = consolidator.dry_run()
    forced = consolidator.prune("cli")

    rows = list(reversed(repo.runs()))
    assert [r.id for r in rows] == [skipped.run_id, ran.run_id, locked.run_id, dry.run_id, forced.run_id]
    assert [r.outcome for r in rows] == [
        RunOutcome.SKIPPED,
        RunOutcome.RAN,
        RunOutcome.SKIPPED,
        RunOutcome.DRY_RUN,
        RunOutcome.RAN,
    ]
    assert [r.trigger for r in rows] == ["beat", "beat", "beat", "dry_run", "cli"]
    assert [r.dry_run for r in rows] == [False, False, False, True, False]
    assert [r.gates["decided_by"] for r in rows] == ["session", None, "lock", "session", None]
    assert list(rows[1].gates) == ["lock", "time", "session", "decided_by"]
    assert rows[1].gates["session"]["new_sessions"] == 5
    assert rows[1].gates["lock"]["passed"] is True
    assert rows[2].gates["lock"]["reason"] == "lock held by another run"
    assert rows[4].gates["bypassed"] == "time,session"
    assert (rows[1].messages_pruned, rows[1].outcomes_pruned) == (0, 1)
    for row in rows:
        assert row.started_at_ms in (NOW_MS, NOW_MS + 2 * HOUR_MS)
        assert row.finished_at_ms is not None and row.finished_at_ms >= row.started_at_ms
        assert row.duration_ms is not None and row.duration_ms >= 0
        assert row.error is None


def test_an_invalid_trigger_is_refused_before_anything_happens(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock
) -> None:
    with pytest.raises(ValidationError, match="trigger"):
        make(engine, gate, clock).maybe_run("")
    assert ConsolidationRepo(engine).runs() == []
    assert not gate.is_locked()


# ── the lock during and after a run ────────────────────────────────────────


def test_the_lock_is_released_after_a_run(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock, lock_client: redis.Redis, lock_name: str
) -> None:
    add_conversations(engine, 5)
    assert make(engine, gate, clock).maybe_run().ran
    assert lock_client.exists(lock_name) == 0


class FailingRepo(ConsolidationRepo):
    """Deletes one batch of messages, then fails inside the prune."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.calls = 0

    def delete_prunable_messages(
        self, cutoff_ms: int, limit: int, *, after_id: int = 0, archive: Stamp | None = None
    ) -> Batch:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("disk full")
        return super().delete_prunable_messages(cutoff_ms, limit, after_id=after_id, archive=archive)


def test_a_failing_run_releases_the_lock_and_is_recorded(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock, lock_client: redis.Redis, lock_name: str
) -> None:
    (conv,) = add_conversations(engine, 1, status="closed", updated_at_ms=OLD_MS)
    add_conversations(engine, 5, prefix="new")
    add_messages(engine, conv, 5)
    consolidator = make(engine, gate, clock, repo=FailingRepo(engine), delete_batch_size=2)
    with pytest.raises(RuntimeError, match="disk full"):
        consolidator.maybe_run()
    assert lock_client.exists(lock_name) == 0, "released although the run raised"
    assert stored_fact(engine) is None, "a failed run records no last run"
    (row,) = ConsolidationRepo(engine).runs()
    assert row.outcome is RunOutcome.FAILED
    assert row.error == "RuntimeError: disk full"
    assert row.messages_pruned == 2, "what the first batch deleted"
    assert row.finished_at_ms is not None
    assert row.gates["decided_by"] is None
    assert count_rows(engine, messages) == 3
    assert make(engine, gate, clock).maybe_run().ran, "the next run can take the lock"


def test_a_started_run_reads_interrupted_until_it_settles(engine: Engine) -> None:
    repo = ConsolidationRepo(engine)
    run_id = repo.start_run(started_at_ms=NOW_MS, trigger="beat", dry_run=False, gates_json="{}")
    row = repo.get_run(run_id)
    assert row is not None
    assert (row.outcome, row.error, row.finished_at_ms) == (RunOutcome.FAILED, INTERRUPTED, None)


class SlowRepo(ConsolidationRepo):
    """The first message batch lasts until ``until`` holds: a long run."""

    def __init__(self, engine: Engine, until: Any) -> None:
        super().__init__(engine)
        self.until = until
        self.waited = False

    def delete_prunable_messages(
        self, cutoff_ms: int, limit: int, *, after_id: int = 0, archive: Stamp | None = None
    ) -> Batch:
        if not self.waited:
            self.waited = True
            wait_for(self.until, timeout=15)
        return super().delete_prunable_messages(cutoff_ms, limit, after_id=after_id, archive=archive)


def test_a_renewed_lock_outlives_its_ttl_during_a_long_run(
    engine: Engine, clock: FrozenClock, lock_client: redis.Redis, lock_name: str, redis_url: str
) -> None:
    gate = RedisLockGate(lock_client, lock_name, ttl_s=0.4, renew_interval_s=0.1)
    rival = RedisLockGate(redis_client(redis_url), lock_name, ttl_s=0.4)
    add_conversations(engine, 5)
    started = time.monotonic()
    gaps: list[str] = []

    def long_enough() -> bool:
        if not lock_client.exists(lock_name):
            gaps.append("lock key vanished mid-run")
        return time.monotonic() - started > 4 * gate.ttl_s

    report = make(engine, gate, clock, repo=SlowRepo(engine, long_enough)).maybe_run()
    assert time.monotonic() - started > 4 * gate.ttl_s
    assert gaps == [], "the lock never expired while the run went on"
    assert report.ran, "the lock was still held when the run finished"
    assert lock_client.exists(lock_name) == 0
    with rival.hold() as held:
        assert held


def test_a_run_whose_lock_expires_stops_at_the_next_batch(
    engine: Engine, clock: FrozenClock, lock_client: redis.Redis, lock_name: str
) -> None:
    gate = RedisLockGate(lock_client, lock_name, ttl_s=0.3, renew_interval_s=0)  # never renewed
    (conv,) = add_conversations(engine, 1, status="closed", updated_at_ms=OLD_MS)
    add_conversations(engine, 5, prefix="new")
    add_messages(engine, conv, 5)
    slow = SlowRepo(engine, lambda: not lock_client.exists(lock_name))
    with pytest.raises(LockLost, match="lost"):
        make(engine, gate, clock, repo=slow, delete_batch_size=2).maybe_run()
    (row,) = ConsolidationRepo(engine).runs()
    assert row.outcome is RunOutcome.FAILED and "LockLost" in (row.error or "")
    assert row.messages_pruned == 2, "one batch, then it stopped"
    assert count_rows(engine, messages) == 3
    assert stored_fact(engine) is None


def test_an_unreachable_lock_server_fails_clearly_and_is_recorded(
    engine: Engine, clock: FrozenClock, lock_name: str
) -> None:
    dead = RedisLockGate(
        redis_client("redis://:pw@127.0.0.1:1/0", connect_timeout_s=0.5, retries=0), lock_name
    )
    add_conversations(engine, 5)
    with pytest.raises(LockUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0"):
        make(engine, dead, clock).maybe_run()
    (row,) = ConsolidationRepo(engine).runs()
    assert row.outcome is RunOutcome.FAILED
    assert row.gates["decided_by"] == "lock"
    assert row.error is not None and "LockUnavailable" in row.error
    assert ":***@" in row.error and ":pw@" not in row.error
    assert stored_fact(engine) is None


def test_a_forced_prune_bypasses_time_and_session_but_not_the_lock(
    engine: Engine, gate: RedisLockGate, clock: FrozenClock, redis_url: str, lock_name: str
) -> None:
    set_fact(engine, str(NOW_S))  # just ran; no new conversation
    add_outcomes(engine, "user1", [NOW_MS] * 3)
    consolidator = make(engine, gate, clock, max_outcomes_per_sender=1)
    with RedisLockGate(redis_client(redis_url), lock_name, ttl_s=30).hold():
        busy = consolidator.prune()
    assert busy.decided_by is Gate.LOCK and busy.forced
    assert count_rows(engine, outcomes) == 3
    clock.advance(SECOND_MS)
    report = consolidator.prune()
    assert report.ran and report.forced
    assert report.outcomes_pruned == 2
    assert stored_fact(engine) == str(NOW_S + 1)


# ── two processes ──────────────────────────────────────────────────────────


@pytest.mark.slow
def test_two_processes_started_at_once_run_exactly_once(
    db_url: str, engine: Engine, redis_url: str, lock_name: str, lock_client: redis.Redis
) -> None:
    (conv,) = add_conversations(engine, 1, status="closed", updated_at_ms=OLD_MS, prefix="old")
    add_conversations(engine, 5, started_at_ms=OLD_MS + 1, prefix="new")
    add_messages(engine, conv, 7)
    ctx = multiprocessing.get_context("spawn")
    start, answered, results = ctx.Barrier(2), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=consolidate_once, args=(db_url, redis_url, lock_name, start, answered, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all("error" not in r for r in reports), reports
    assert len({r["pid"] for r in reports}) == 2
    outcomes_ = sorted((r["outcome"], r["decided_by"]) for r in reports)
    assert outcomes_ == [("ran", None), ("skipped", "lock")], reports
    assert sum(r["messages_pruned"] for r in reports) == 7
    assert count_rows(engine, messages) == 0
    assert [p.exitcode for p in procs] == [0, 0]
    rows = ConsolidationRepo(engine).runs()
    assert sorted(r.outcome.value for r in rows) == ["ran", "skipped"]
    assert lock_client.exists(lock_name) == 0
    assert count_rows(engine, facts, facts.c.sender_id == SYSTEM_SENDER) == 1
    loser = next(r for r in rows if r.outcome is RunOutcome.SKIPPED)
    assert json.loads(loser.gates_json)["lock"]["passed"] is False
