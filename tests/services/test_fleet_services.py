"""A worker process's services without Celery: dispatch, recovery, release, remote enqueue, with a
recording publisher."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from memtasks.config import load_settings
from memtasks.domain.clock import FrozenClock
from memtasks.domain.errors import MalformedPayload, UnknownJobKind
from memtasks.domain.jobs import JobKind, JobStatus
from memtasks.domain.sweeps import SWEEP_NAMES
from memtasks.domain.tree import seal_job
from memtasks.services.fleet import FleetServices
from memtasks.services.mem_tree import Followup, Outcome
from memtasks.services.publishing import DecayMessage
from memtasks.services.runtime import open_runtime
from memtasks.storage.consolidation_repo import ConsolidationRepo
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.mem_tree_jobs: list[Followup] = []
        self.decay_jobs: list[DecayMessage] = []
        self.fail = fail

    def mem_tree(self, jobs: Sequence[Followup]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.mem_tree_jobs += jobs

    def decay(self, jobs: Sequence[DecayMessage]) -> None:
        self.decay_jobs += jobs


@pytest.fixture
def pipeline(db_url: str, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock) -> FleetServices:
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_REDISPATCH_AFTER_S", "60")
    return FleetServices(open_runtime(load_settings(), clock=clock), Recorder())


def test_dispatch_publishes_rows_without_a_message_once(pipeline: FleetServices, clock: FrozenClock) -> None:
    jobs = pipeline.runtime.jobs
    unpublished = jobs.enqueue(seal_job("a", 0))
    published = jobs.enqueue(seal_job("b", 0), published=True)
    assert pipeline.maintenance.dispatch_due() == {"mem_tree": 1, "decay": 0}
    recorder = pipeline.publisher
    assert isinstance(recorder, Recorder)
    assert [j.job_id for j in recorder.mem_tree_jobs] == [unpublished]
    assert pipeline.maintenance.dispatch_due()["mem_tree"] == 0, "a fresh message is not sent again"
    clock.advance(60_000)
    before = len(recorder.mem_tree_jobs)
    assert pipeline.maintenance.dispatch_due()["mem_tree"] == 2, (
        "after redispatch_after, possibly lost messages go again"
    )
    assert {j.job_id for j in recorder.mem_tree_jobs[before:]} == {unpublished, published}


def test_a_failed_publish_leaves_the_rows_to_the_next_sweep(pipeline: FleetServices) -> None:
    pipeline.maintenance.publisher = Recorder(fail=True)
    job_id = pipeline.runtime.jobs.enqueue(seal_job("a", 0))
    with pytest.raises(ConnectionError):
        pipeline.maintenance.dispatch_due()
    row = pipeline.runtime.jobs.get(str(job_id))
    assert row is not None and row.dispatched_at_ms is None
    pipeline.maintenance.publisher = Recorder()
    assert pipeline.maintenance.dispatch_due()["mem_tree"] == 1


def test_recover_requeues_and_publishes_at_once(pipeline: FleetServices, clock: FrozenClock) -> None:
    jobs = pipeline.runtime.jobs
    job_id = jobs.enqueue(seal_job("a", 0), published=True)
    assert jobs.claim(str(job_id)) is not None
    clock.advance(jobs.config.lease_ms + 1)
    assert pipeline.maintenance.recover() == {"requeued": 1, "failed": 0, "dispatched": 1}


def test_release_held_refunds_the_attempt(pipeline: FleetServices) -> None:
    jobs = pipeline.runtime.jobs
    job_id = jobs.enqueue(seal_job("a", 0))
    job = jobs.claim(str(job_id))
    assert job is not None and job.attempts == 1
    with pipeline.holding.lease(jobs, job.lease):
        assert pipeline.release_held() == 1
    row = jobs.get(job.id)
    assert row is not None and (row.status, row.attempts) == (JobStatus.READY, 0)
    assert pipeline.release_held() == 0


def test_a_held_lease_is_extended_while_the_job_runs(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease keeper's thread extends a real lease on a real clock: it outlives ``lease_s``."""
    monkeypatch.setenv("MEMTASKS_DATABASE_URL", db_url)
    monkeypatch.setenv("MEMTASKS_LEASE_S", "0.6")
    pipeline = FleetServices(open_runtime(load_settings()), Recorder())
    jobs = pipeline.runtime.jobs
    job = jobs.claim(str(jobs.enqueue(seal_job("a", 0))))
    assert job is not None
    first = job.locked_until_ms
    assert first is not None
    with pipeline.holding.lease(jobs, job.lease):

        def extended_twice() -> bool:
            row = jobs.get(job.id)
            return row is not None and row.locked_until_ms is not None and row.locked_until_ms > first + 300

        wait_for(extended_twice, timeout=10)
        assert jobs.recover_expired().requeued == [], "a beaten lease has not expired"
    assert pipeline.release_held() == 0, "the lease was dropped when the block ended"


def test_remote_enqueue_validates_dedupes_and_publishes(pipeline: FleetServices) -> None:
    first = pipeline.remote.enqueue_mem_tree("seal", {"tree_id": "t", "level": 0}, "seal:t:0")
    again = pipeline.remote.enqueue_mem_tree("seal", {"tree_id": "t", "level": 0}, "seal:t:0")
    assert first["job_id"] and again == {"job_id": None, "deduped": True}
    later = pipeline.remote.enqueue_mem_tree("seal", {"tree_id": "u", "level": 0}, delay_s=30)
    recorder = pipeline.publisher
    assert isinstance(recorder, Recorder)
    assert [j.job_id for j in recorder.mem_tree_jobs] == [first["job_id"]], "a delayed job waits for dispatch"
    assert later["job_id"]
    with pytest.raises(UnknownJobKind, match="'nope'"):
        pipeline.remote.enqueue_mem_tree("nope", {})
    with pytest.raises(MalformedPayload, match="'level'"):
        pipeline.remote.enqueue_mem_tree("seal", {"tree_id": "t"})
    assert pipeline.runtime.jobs.admin.count_total() == 2


def test_remote_enqueue_takes_the_fair_share_lane_from_the_producer_or_the_payload(
    pipeline: FleetServices,
) -> None:
    given = pipeline.remote.enqueue_mem_tree("extract_chunk", {"chunk_id": "c1"}, fair_key="tenant-1")
    found = pipeline.remote.enqueue_mem_tree("extract_chunk", {"chunk_id": "c2", "agent_id": "agent-9"})
    jobs = pipeline.runtime.jobs
    lanes = [getattr(jobs.get(str(r["job_id"])), "fair_key", None) for r in (given, found)]
    assert lanes == ["tenant-1", "agent-9"]
    with pytest.raises(MalformedPayload, match="fair_key"):
        pipeline.remote.enqueue_mem_tree("extract_chunk", {"chunk_id": "c3"}, fair_key="x" * 200)


def test_a_job_that_is_not_claimable_is_dropped(pipeline: FleetServices) -> None:
    job_id = str(pipeline.runtime.jobs.enqueue(seal_job("a", 0)))
    result = pipeline.mem_tree.run_by_id(job_id)
    assert result is not None and result.outcome is Outcome.DONE
    assert pipeline.mem_tree.run_by_id(job_id) is None, "done: the message is dropped"
    assert pipeline.mem_tree.run_by_id("job:missing") is None
    assert JobKind.SEAL.value in {j.kind for j in pipeline.runtime.jobs.admin.list_jobs()}


def test_every_sweep_has_its_work_and_each_consolidation_tick_reaches_the_ledger(
    pipeline: FleetServices, redis_url: str
) -> None:
    """Sweeps come from one list; consolidation guards its own ticks, so two ticks of one slot
    (two beats) both reach its ledger, each stopped or passed by its own gates."""
    assert set(pipeline.sweeps.work) == SWEEP_NAMES
    first = pipeline.sweeps.run("consolidate", 600)
    second = pipeline.sweeps.run("consolidate", 600)
    assert first.ran and second.ran and first.slot == second.slot, "no slot guard in front"
    runs = ConsolidationRepo(pipeline.runtime.engine).runs(limit=10)
    assert len(runs) == 2, "every tick leaves its ledger row"
    assert pipeline.sweeps.run("recover", 600).ran
    assert not pipeline.sweeps.run("recover", 600).ran, "other sweeps run once per slot"
