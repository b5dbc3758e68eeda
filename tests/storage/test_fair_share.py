"""Fair share on a real SQLite file and a real PostgreSQL: within a priority the lanes take
turns, so one agent's backlog never holds another agent's jobs behind it; kind priority still
comes first; a lane comes from the producer's key or the payload."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from memtasks.domain.clock import FrozenClock
from memtasks.domain.errors import MalformedPayload
from memtasks.domain.fairness import LANE_SPACING_MS
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue.insert import READY_WORDS, SPACING
from memtasks.storage.tables import mem_tree_jobs

pytestmark = pytest.mark.integration


def chunk(agent: str, n: int) -> NewJob:
    return NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"{agent}-{n}", "agent_id": agent})


def test_a_backlog_does_not_hold_another_agents_jobs_behind_it(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    backlog = jobs.enqueue_many([chunk("big", n) for n in range(2_000)])
    clock.advance(5_000)  # another agent arrives five seconds later
    small = set(jobs.enqueue_many([chunk("small", n) for n in range(10)]))

    claimed = []
    while len(small - set(claimed)) > 0:
        batch = jobs.claim_batch(5)
        assert batch, "every job of the small agent is claimed before the backlog runs out"
        claimed.extend(j.id for j in batch)
    # Two lanes take turns: the small agent's 10 jobs are in, at most, the first 10 + 10 + the
    # five the big lane was due ahead of it.
    assert len(claimed) <= 25, len(claimed)
    assert set(claimed) - small <= set(backlog)


def test_kind_priority_comes_before_the_lanes(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    jobs.enqueue_many([chunk("big", n) for n in range(100)])
    clock.advance(1)
    seal = jobs.enqueue(NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0, "agent_id": "big"}))
    first = jobs.claim_next()
    assert first is not None and first.id == seal


def test_two_busy_lanes_alternate_and_each_keeps_its_order(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    a = jobs.enqueue_many([chunk("a", n) for n in range(6)])
    b = jobs.enqueue_many([chunk("b", n) for n in range(6)])
    order = []
    while (claimed := jobs.claim_next()) is not None:
        order.append(claimed.id)
    assert [i for i in order if i in a] == a and [i for i in order if i in b] == b
    lanes = ["a" if i in a else "b" for i in order]
    assert all(lanes[k] != lanes[k + 1] for k in range(0, 12, 2)), lanes


def test_jobs_without_a_lane_share_one_and_keep_their_order(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    ids = []
    for n in range(5):
        ids.append(jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": str(n)})))
        clock.advance(1)
    order = []
    while (claimed := jobs.claim_next()) is not None:
        order.append(claimed.id)
    assert order == ids
    assert {j.fair_key for j in jobs.admin.list_jobs(limit=10)} == {""}


def test_the_producers_key_wins_over_the_payload_and_bad_keys_are_refused(
    jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    job_id = jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"agent_id": "payload"}, fair_key="tenant-7"))
    stored = jobs.get(str(job_id))
    assert stored is not None and stored.fair_key == "tenant-7"
    assert NewJob(JobKind.EXTRACT_CHUNK, {"tenant_id": "t1"}).lane == "t1"
    assert NewJob(JobKind.EXTRACT_CHUNK, {"agent_id": 7}).lane == ""  # not a string: the shared lane
    for bad in ("", "   ", "x" * 129, "nul\x00"):
        with pytest.raises(MalformedPayload, match="fair_key"):
            NewJob(JobKind.EXTRACT_CHUNK, {}, fair_key=bad)


def test_a_lane_places_its_next_job_one_spacing_after_its_end(jobs: MemTreeJobs, clock: FrozenClock) -> None:
    first, second = jobs.enqueue_many([chunk("a", 0), chunk("a", 1)])
    later = jobs.enqueue(NewJob(JobKind.EXTRACT_CHUNK, {"agent_id": "a"}, available_at_ms=clock() + 60_000))
    with jobs.engine.connect() as c:
        seqs = {r.id: r.fair_seq for r in c.execute(select(mem_tree_jobs.c.id, mem_tree_jobs.c.fair_seq))}
    assert seqs[str(second)] - seqs[str(first)] == LANE_SPACING_MS
    assert seqs[str(later)] == clock() + 60_000  # never before it is due


def test_one_enqueue_of_several_lanes_places_each_lane_on_its_own(
    jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    jobs.enqueue(chunk("b", 99))  # lane b has a job already
    ids = jobs.enqueue_many([chunk("a", 0), chunk("b", 0), chunk("a", 1), chunk("b", 1)])
    with jobs.engine.connect() as c:
        seqs = {r.id: r.fair_seq for r in c.execute(select(mem_tree_jobs.c.id, mem_tree_jobs.c.fair_seq))}
    now = clock()
    assert [seqs[str(i)] for i in ids] == [
        now,
        now + LANE_SPACING_MS,
        now + LANE_SPACING_MS,
        now + 2 * LANE_SPACING_MS,
    ]


def test_the_spacing_written_into_the_insert_is_the_domains() -> None:
    assert SPACING.name == str(LANE_SPACING_MS)
    assert {word: column.name for word, column in READY_WORDS.items()} == {
        "ready": "'ready'",
        "pending": "'pending'",
    }
