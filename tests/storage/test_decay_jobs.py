"""The decay job state machine on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from memtasks.domain.clock import MINUTE_MS, FrozenClock
from memtasks.domain.decay import DecayKind, DecaySpec, DecayState, SummaryMethod
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import FailureClass
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.tables import decay_jobs
from tests.helpers import all_at_once

pytestmark = pytest.mark.integration


def recovered(decay: DecayJobs) -> tuple[list[str], list[str]]:
    result = decay.recover_expired()
    return result.requeued, result.failed


DET = DecaySpec(DecayKind.CANDIDATE_COMPRESSION, ("mem_a", "mem_b"))
LLM = DecaySpec(DecayKind.EPISODE_COMPRESSION, ("ep_a",), SummaryMethod.LLM_SUMMARY)


@pytest.fixture
def decay(engine, clock: FrozenClock) -> DecayJobs:  # type: ignore[no-untyped-def]
    return DecayJobs(engine, clock=clock)


def test_run_next_claims_the_first_due_pending_job(decay: DecayJobs, clock: FrozenClock) -> None:
    later = decay.enqueue(DET, created_by="op", scheduled_for_ms=clock.now_ms + 10_000)
    first = decay.enqueue(DET, created_by="op")
    claimed = decay.claim_next()
    assert claimed is not None and claimed.id == first
    assert claimed.state is DecayState.IN_PROGRESS and claimed.attempts == 1
    assert claimed.locked_until_ms == clock.now_ms + 5 * MINUTE_MS
    assert decay.claim_next() is None, "the other one is not due yet"
    clock.advance(10_000)
    again = decay.claim_next()
    assert again is not None and again.id == later


def test_run_next_is_idle_on_an_empty_queue(decay: DecayJobs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert decay.claim_next() is None
    assert "memtasks.decay.runner stage=idle" in caplog.text


def test_unattended_run_next_never_picks_llm_jobs(decay: DecayJobs) -> None:
    llm = decay.enqueue(LLM, created_by="op")
    assert decay.claim_next() is None
    row = decay.get(llm)
    assert row is not None and row.state is DecayState.PENDING, "left for an operator, not failed"
    claimed = decay.claim_next(include_llm=True)
    assert claimed is not None and claimed.id == llm


def test_run_by_id_semantics(decay: DecayJobs) -> None:
    with pytest.raises(ValidationError, match="decay job dj_missing not found") as info:
        decay.claim("dj_missing")
    assert info.value.code == "decay.job.not_found"
    job_id = decay.enqueue(DET, created_by="op")
    claimed = decay.claim(job_id)
    assert claimed is not None
    with pytest.raises(ValidationError, match="already in_progress") as info:
        decay.claim(job_id)
    assert info.value.code == "decay.job.in_progress"
    assert decay.settle_completed(claimed.lease, "mem_summary")
    before = decay.get(job_id)
    assert decay.claim(job_id) is None, "terminal: a no-op"
    assert decay.get(job_id) == before
    assert before is not None and before.result_memory_id == "mem_summary"


def test_malformed_row_is_a_validation_error(decay: DecayJobs, engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        c.execute(
            insert(decay_jobs).values(
                id="dj_bad",
                kind="candidate_compression",
                source_ids_json="{oops",
                summary_method="deterministic_concatenate",
                state="pending",
                scheduled_for_ms=0,
                created_at_ms=0,
                created_by="x",
                updated_at_ms=0,
            )
        )
    with pytest.raises(ValidationError, match="dj_bad row malformed") as info:
        decay.claim("dj_bad")
    assert info.value.code == "decay.job.malformed"
    failed = decay.get("dj_bad")
    assert failed is not None
    assert failed.state is DecayState.FAILED, "a malformed row run by id is failed, not left pending"
    assert failed.state_reason == "decay.job.malformed"
    with pytest.raises(ValidationError, match="dj_bad row malformed"):
        decay.claim("dj_bad")
    good = decay.enqueue(DET, created_by="op")
    claimed = decay.claim_next()
    assert claimed is not None and claimed.id == good, "a bad row never blocks run-next"
    bad = decay.get("dj_bad")
    assert bad is not None and bad.state is DecayState.FAILED
    assert bad.state_reason == "decay.job.malformed"


def test_claim_is_compare_and_set(decay: DecayJobs) -> None:
    job_id = decay.enqueue(DET, created_by="op")

    def run() -> str:
        try:
            return "claimed" if decay.claim(job_id) is not None else "noop"
        except ValidationError as exc:
            return exc.code or "error"

    outcomes = all_at_once(8, run)
    assert outcomes.count("claimed") == 1
    assert set(outcomes) <= {"claimed", "decay.job.in_progress"}


def test_settle_is_fenced_and_failed_reason_never_empty(decay: DecayJobs, clock: FrozenClock) -> None:
    job_id = decay.enqueue(DET, created_by="op")
    first = decay.claim(job_id)
    assert first is not None
    clock.advance(5 * MINUTE_MS + 1)
    assert recovered(decay) == ([job_id], [])
    second = decay.claim(job_id)
    assert second is not None
    assert not decay.settle_completed(first.lease, "mem_stale"), "fenced out"
    assert decay.settle_failed(second.lease, "   ", FailureClass.UNRECOVERABLE)
    row = decay.get(job_id)
    assert row is not None and row.state is DecayState.FAILED
    assert row.state_reason == "decay.runner.failure"
    assert row.result_memory_id is None
    assert row.updated_at_ms == clock.now_ms, "claim and settle read one injected clock"


def test_database_refuses_failed_without_reason_and_unknown_states(decay: DecayJobs, engine) -> None:  # type: ignore[no-untyped-def]
    job_id = decay.enqueue(DET, created_by="op")
    for values in ({"state": "failed", "state_reason": ""}, {"state": "exploded"}):
        with pytest.raises(IntegrityError), engine.begin() as c:
            c.execute(update(decay_jobs).where(decay_jobs.c.id == job_id).values(**values))


def test_recovery_fails_a_job_whose_attempts_are_spent(engine, clock: FrozenClock) -> None:  # type: ignore[no-untyped-def]
    decay = DecayJobs(engine, clock=clock, max_attempts=1)
    job_id = decay.enqueue(DET, created_by="op")
    assert decay.claim_next() is not None
    clock.advance(5 * MINUTE_MS + 1)
    assert recovered(decay) == ([], [job_id])
    row = decay.get(job_id)
    assert row is not None and row.state is DecayState.FAILED
    assert row.state_reason == "decay.runner.lease_expired"


def test_heartbeat_keeps_the_lease(decay: DecayJobs, clock: FrozenClock) -> None:
    decay.enqueue(DET, created_by="op")
    claimed = decay.claim_next()
    assert claimed is not None
    clock.advance(4 * MINUTE_MS)
    assert decay.heartbeat(claimed.lease)
    clock.advance(4 * MINUTE_MS)
    assert recovered(decay) == ([], [])


def test_cancel_pending(decay: DecayJobs) -> None:
    a = decay.enqueue(DET, created_by="op")
    decay.enqueue(LLM, created_by="op")
    assert decay.admin.cancel(a)
    assert not decay.admin.cancel(a)
    with pytest.raises(ValidationError, match="not found"):
        decay.admin.cancel("dj_nope")
    assert decay.admin.cancel_ready() == 1
    assert decay.admin.count_by_state()[DecayState.CANCELLED] == 2
    assert decay.claim_next(include_llm=True) is None


def test_enqueue_needs_a_requester(decay: DecayJobs) -> None:
    with pytest.raises(ValidationError, match="created_by"):
        decay.enqueue(DET, created_by=" ")
