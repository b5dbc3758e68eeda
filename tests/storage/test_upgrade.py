"""An upgrade from the last release's schema (0004): every row keeps its meaning, and the new
queue engine claims and settles the rows it finds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select

from memtasks.domain.clock import MINUTE_MS, FrozenClock
from memtasks.domain.decay import DecayState
from memtasks.domain.jobs import FailureClass, JobStatus
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.migrate import current_revision, head_revision, upgrade
from memtasks.storage.tables import decay_jobs, mem_tree_jobs

pytestmark = pytest.mark.integration

T0 = FrozenClock().now_ms
LEASE_END = T0 - MINUTE_MS  # every running row's lease has expired by T0


def mem_tree_row(status: str, **extra: Any) -> dict[str, Any]:
    row = {
        "id": f"job:{status}-{len(extra)}-{extra.get('failure_class', '')}",
        "kind": "seal",
        "priority": 1,
        "payload_json": json.dumps({"tree_id": f"t-{status}", "level": 0}),
        "dedupe_key": None,
        "status": status,
        "attempts": 0 if status == "ready" else 1,
        "max_attempts": 5,
        "available_at_ms": T0 - 10 * MINUTE_MS,
        "created_at_ms": T0 - 10 * MINUTE_MS,
    }
    if status == "running":
        row |= {"lease_token": "old-token", "locked_until_ms": LEASE_END, "started_at_ms": T0 - 2 * MINUTE_MS}
    if status in {"done", "failed", "cancelled"}:
        row |= {"completed_at_ms": T0 - 3 * MINUTE_MS, "started_at_ms": T0 - 4 * MINUTE_MS}
    return row | extra


def decay_row(state: str, kind: str = "candidate_compression", **extra: Any) -> dict[str, Any]:
    row = {
        "id": f"dj_{state}_{kind}",
        "kind": kind,
        "source_ids_json": json.dumps(["ep_a"] if kind == "episode_compression" else ["mem_a", "mem_b"]),
        "summary_method": "deterministic_concatenate",
        "attestation_required": True,
        "state": state,
        "scheduled_for_ms": T0 - 10 * MINUTE_MS,
        "created_at_ms": T0 - 10 * MINUTE_MS,
        "created_by": "agent",
        "updated_at_ms": T0 - 5 * MINUTE_MS,
        "attempts": 0 if state == "pending" else 1,
        "max_attempts": 3,
    }
    if state == "in_progress":
        row |= {"lease_token": "old-token", "locked_until_ms": LEASE_END}
    if state == "failed":
        row["state_reason"] = "decay.compress.source_missing"
    if state == "completed":
        row["result_memory_id"] = "mem_summary"
    return row | extra


MEM_TREE_ROWS = [
    mem_tree_row("ready"),
    mem_tree_row("running"),
    mem_tree_row("done"),
    mem_tree_row("failed", failure_class="transient", failure_reason="attempts_exhausted", last_error="x"),
    mem_tree_row(
        "failed", failure_class="unrecoverable", failure_reason="job.payload.malformed", last_error="y"
    ),
    mem_tree_row("cancelled"),
]
DECAY_ROWS = [
    decay_row("pending"),
    decay_row("pending", "episode_compression"),
    decay_row("in_progress"),
    decay_row("completed"),
    decay_row("failed"),
    decay_row("cancelled", state_reason="decay.job.cancelled"),
]


def at_release_0004(db_url: str) -> Engine:
    engine = get_engine(db_url, EngineOptions(auto_migrate=False))
    upgrade(engine, "0004")
    assert current_revision(engine) == "0004"
    columns = {c["name"] for c in inspect(engine).get_columns("decay_jobs")}
    assert "priority" not in columns, "the database is at the old schema"
    with engine.begin() as conn:
        for row in MEM_TREE_ROWS:
            conn.execute(mem_tree_jobs.insert().values(row))
        for row in DECAY_ROWS:
            conn.execute(decay_jobs.insert().values(row))
    return engine


def test_an_upgrade_keeps_every_row_and_its_meaning(db_url: str) -> None:
    engine = at_release_0004(db_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        trees = {r.id: r for r in conn.execute(select(mem_tree_jobs))}
        decays = {r.id: r for r in conn.execute(select(decay_jobs))}
    assert {i: r.status for i, r in trees.items()} == {r["id"]: r["status"] for r in MEM_TREE_ROWS}
    assert {i: r.state for i, r in decays.items()} == {r["id"]: r["state"] for r in DECAY_ROWS}
    for row in MEM_TREE_ROWS:  # nothing the old schema held has changed
        stored = trees[row["id"]]._mapping
        assert {k: stored[k] for k in row} == row
    for row in DECAY_ROWS:
        stored = decays[row["id"]]._mapping
        assert {k: stored[k] for k in row} == row
    assert all(r.updated_at_ms > 0 for r in trees.values()), "updated_at_ms from the times the row held"
    assert trees[MEM_TREE_ROWS[2]["id"]].updated_at_ms == MEM_TREE_ROWS[2]["completed_at_ms"]
    assert decays["dj_pending_episode_compression"].priority == 5
    assert decays["dj_pending_candidate_compression"].priority == 4
    assert decays["dj_failed_candidate_compression"].failure_class == "unrecoverable", (
        "failed for good, as before"
    )
    for state in ("completed", "failed", "cancelled"):
        row = decays[f"dj_{state}_candidate_compression"]
        assert row.completed_at_ms == row.updated_at_ms
    assert decays["dj_in_progress_candidate_compression"].started_at_ms == DECAY_ROWS[2]["updated_at_ms"]


def test_the_new_engine_claims_and_settles_the_rows_it_finds(db_url: str) -> None:
    engine = at_release_0004(db_url)
    upgrade(engine)
    clock = FrozenClock(T0)
    jobs, decay = MemTreeJobs(engine, clock=clock), DecayJobs(engine, clock=clock)

    ready = jobs.claim(MEM_TREE_ROWS[0]["id"])
    assert ready is not None and jobs.settle_done(ready.lease)
    assert jobs.recover_expired().requeued == [MEM_TREE_ROWS[1]["id"]], "the old lease expired"
    again = jobs.claim(MEM_TREE_ROWS[1]["id"])
    assert again is not None and again.attempts == 2 and jobs.settle_done(again.lease)
    assert jobs.admin.requeue_failed(transient_only=True) == 1, "the transient failure heals"
    healed = jobs.claim(MEM_TREE_ROWS[3]["id"])
    assert healed is not None and jobs.settle_done(healed.lease)
    counts = jobs.admin.count_by_state()
    assert (counts[JobStatus.DONE], counts[JobStatus.FAILED], counts[JobStatus.CANCELLED]) == (4, 1, 1)

    first = decay.claim_next()
    assert first is not None and first.id == "dj_pending_candidate_compression", "priority 4 before 5"
    assert decay.settle_completed(first.lease, "mem_new")
    assert decay.recover_expired().requeued == ["dj_in_progress_candidate_compression"]
    assert decay.admin.requeue_failed(transient_only=True) == 0, "an old failure stays failed"
    second = decay.claim_next()
    assert second is not None and second.id == "dj_in_progress_candidate_compression"
    retried = decay.settle_failed(second.lease, "model timed out", FailureClass.TRANSIENT)
    assert retried is not None and not retried.terminal, "decay jobs retry now"
    third = decay.claim_next()
    assert third is not None and third.id == "dj_pending_episode_compression"
    assert decay.settle_completed(third.lease, None)
    states = decay.admin.count_by_state()
    assert states[DecayState.COMPLETED] == 3 and states[DecayState.FAILED] == 1
    assert states[DecayState.PENDING] == 1 and states[DecayState.CANCELLED] == 1
