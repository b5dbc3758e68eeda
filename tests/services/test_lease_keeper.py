"""The lease keeper: one thread beats every held lease, drops lost ones, hands them back."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from memtasks.domain.jobs import Lease
from memtasks.services.lease_keeper import LeaseKeeper
from tests.helpers import wait_for

pytestmark = pytest.mark.unit


class Beats:
    def __init__(self, lost: frozenset[str] = frozenset(), failing: frozenset[str] = frozenset()) -> None:
        self.count: Counter[str] = Counter()
        self.threads: set[str] = set()
        self.lost = lost
        self.failing = failing
        self.guard = threading.Lock()

    def __call__(self, lease: Lease) -> bool:
        with self.guard:
            self.count[lease.job_id] += 1
            self.threads.add(threading.current_thread().name)
        if lease.job_id in self.failing:
            raise ConnectionError("database unreachable")
        return lease.job_id not in self.lost


def lease(job_id: str, token: str = "t") -> Lease:
    return Lease(job_id=job_id, token=token)


def test_every_held_lease_is_beaten_from_one_thread() -> None:
    beats = Beats()
    keeper = LeaseKeeper(beats, interval_s=0.02)
    renewed: list[str] = []
    with keeper.holding(lease("a")), keeper.holding(lease("b"), renew=lambda: renewed.append("b")):
        wait_for(lambda: beats.count["a"] >= 3 and beats.count["b"] >= 3, timeout=10)
    assert beats.threads == {"memtasks-lease-keeper"}
    assert len(renewed) >= 3, "the permit is renewed with its lease"
    assert keeper.held() == []
    after = dict(beats.count)
    with keeper.holding(lease("c")):
        wait_for(lambda: beats.count["c"] >= 2, timeout=10)
    assert {k: beats.count[k] for k in after} == after, "a dropped lease is never beaten again"
    assert beats.threads == {"memtasks-lease-keeper"}, "the thread is reused"


def test_a_lost_lease_is_dropped_and_a_failing_beat_is_retried() -> None:
    beats = Beats(lost=frozenset({"gone"}), failing=frozenset({"flaky"}))
    keeper = LeaseKeeper(beats, interval_s=0.02)
    keeper.hold(lease("gone"))
    keeper.hold(lease("flaky"))
    wait_for(lambda: beats.count["flaky"] >= 3, timeout=10)
    assert [held.job_id for held in keeper.held()] == ["flaky"]
    assert beats.count["gone"] == 1
    keeper.take_all()


def test_take_all_hands_back_every_lease_and_a_newer_lease_survives_an_old_drop() -> None:
    keeper = LeaseKeeper(Beats(), interval_s=60)
    old, new = lease("a", "old"), lease("a", "new")
    keeper.hold(old)
    keeper.hold(new)
    keeper.drop(old)
    keeper.hold(lease("b"))
    assert sorted(keeper.take_all(), key=lambda x: x.job_id) == [new, lease("b")]
    assert keeper.held() == []


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        LeaseKeeper(Beats(), interval_s=0)


def test_a_batch_of_leases_is_held_and_dropped_together() -> None:
    beats = Beats()
    keeper = LeaseKeeper(beats, interval_s=0.02)
    batch = [lease(f"b{i}", token="shared") for i in range(50)]
    with keeper.holding_many(batch):
        assert sorted(held.job_id for held in keeper.held()) == sorted(f"b{i}" for i in range(50))
        wait_for(lambda: all(beats.count[f"b{i}"] >= 2 for i in range(50)), timeout=10)
    assert keeper.held() == []
    after = dict(beats.count)
    with keeper.holding(lease("later")):
        wait_for(lambda: beats.count["later"] >= 2, timeout=10)
    assert {k: beats.count[k] for k in after} == after, "a dropped batch is never beaten again"


def test_a_batch_held_at_shutdown_is_handed_back() -> None:
    keeper = LeaseKeeper(Beats(), interval_s=60)
    batch = [lease(f"s{i}") for i in range(3)]
    with keeper.holding_many(batch):
        assert sorted(keeper.take_all(), key=lambda held: held.job_id) == batch


def test_a_lost_lease_tells_the_running_job(caplog: pytest.LogCaptureFixture) -> None:
    keeper = LeaseKeeper(Beats(lost=frozenset({"gone"})), interval_s=0.02)
    with keeper.holding(lease("gone")) as watch:
        assert watch.wait_lost(10), "the job learns that its lease was taken over"
        assert watch.lost
    assert "job gone lost its lease while running" in caplog.text


def test_a_beat_that_meets_the_jobs_own_settle_is_no_loss(caplog: pytest.LogCaptureFixture) -> None:
    """The row stops being running when the job settles; a beat in between must not cry wolf."""
    settled = threading.Event()
    beats: Counter[str] = Counter()

    def beat(held: Lease) -> bool:
        beats[held.job_id] += 1
        return not settled.is_set()

    keeper = LeaseKeeper(beat, interval_s=0.01)
    with keeper.holding(lease("j")) as watch:
        wait_for(lambda: beats["j"] >= 1, timeout=10)
        watch.settling()
        settled.set()  # the settle committed; the lease is still registered here
        wait_for(lambda: keeper.held() == [], timeout=10)  # the next beat saw the settled row
    assert not watch.lost
    assert "lost its lease" not in caplog.text
