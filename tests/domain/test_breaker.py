"""memtasks.storage.breaker.CircuitBreaker, driven by a fake monotonic clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from memtasks.domain.errors import CircuitOpen, StorageError
from memtasks.storage.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.unit

NAME = "postgresql://db.internal/memtasks"


class FakeMonotonic:
    """A monotonic clock that moves only when ``now`` is advanced."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


def make(clock: FakeMonotonic, *, threshold: int = 3, cooldown_s: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(NAME, threshold=threshold, cooldown_s=cooldown_s, monotonic=clock)


def tripped(clock: FakeMonotonic, *, threshold: int = 3, cooldown_s: float = 30.0) -> CircuitBreaker:
    breaker = make(clock, threshold=threshold, cooldown_s=cooldown_s)
    for _ in range(threshold):
        breaker.before_attempt()
        breaker.record_failure()
    return breaker


def state(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read afresh (a plain call keeps mypy from narrowing it across clock moves)."""
    return breaker.state


def refusal(breaker: CircuitBreaker) -> str:
    with pytest.raises(CircuitOpen) as info:
        breaker.before_attempt()
    return str(info.value)


def test_a_new_breaker_is_closed(clock: FakeMonotonic) -> None:
    breaker = make(clock)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.name == NAME
    assert breaker.threshold == 3
    assert breaker.cooldown_s == 30.0
    for _ in range(10):
        breaker.before_attempt()
    assert state(breaker) is BreakerState.CLOSED


def test_defaults() -> None:
    breaker = CircuitBreaker("db")
    assert (breaker.threshold, breaker.cooldown_s) == (3, 30.0)


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_fewer_failures_than_the_threshold_keep_it_closed(clock: FakeMonotonic, failures: int) -> None:
    breaker = make(clock)
    for _ in range(failures):
        breaker.before_attempt()
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == failures
    breaker.before_attempt()


def test_three_failures_open_it(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.consecutive_failures == 3
    message = refusal(breaker)
    assert f"circuit breaker open for {NAME}" in message
    assert "3 consecutive" in message
    assert message == (
        f"circuit breaker open for {NAME}: 3 consecutive initialisation failures; retry in 30 s"
    )


def test_circuit_open_is_a_storage_error(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    with pytest.raises(StorageError):
        breaker.before_attempt()


def test_the_refusal_counts_down_the_cooldown(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(20)
    assert refusal(breaker).endswith("retry in 10 s")
    clock.advance(9.6)
    assert refusal(breaker).endswith("retry in 0 s")


def test_refusals_change_nothing(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    for _ in range(5):
        refusal(breaker)
    assert breaker.consecutive_failures == 3
    assert state(breaker) is BreakerState.OPEN
    clock.advance(30)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_it_stays_open_until_the_cooldown_has_passed(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    opened_at = clock.now
    clock.now = opened_at + 29.999
    assert state(breaker) is BreakerState.OPEN
    refusal(breaker)
    clock.now = opened_at + 30
    assert state(breaker) is BreakerState.HALF_OPEN


def test_a_failure_while_open_rearms_the_cooldown(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(20)
    breaker.record_failure()
    assert breaker.consecutive_failures == 4
    clock.advance(20)
    assert state(breaker) is BreakerState.OPEN, "40 s after tripping but only 20 s after the last failure"
    message = refusal(breaker)
    assert "4 consecutive" in message
    assert message.endswith("retry in 10 s")
    clock.advance(10)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_trial_through(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.before_attempt()
    message = refusal(breaker)
    assert f"circuit breaker open for {NAME}" in message
    assert "3 consecutive" in message
    assert message.endswith("a trial initialisation is in progress")
    assert state(breaker) is BreakerState.HALF_OPEN
    clock.advance(1_000)
    assert "trial initialisation is in progress" in refusal(breaker)


def test_concurrent_callers_in_half_open_get_one_trial(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    callers = 16
    barrier = threading.Barrier(callers)

    def attempt() -> bool:
        barrier.wait()
        try:
            breaker.before_attempt()
        except CircuitOpen:
            return False
        return True

    with ThreadPoolExecutor(max_workers=callers) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(callers)))
    assert outcomes.count(True) == 1
    assert outcomes.count(False) == callers - 1


def test_a_successful_trial_closes_and_resets(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    breaker.before_attempt()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    breaker.before_attempt()
    breaker.before_attempt()


def test_after_closing_it_takes_a_full_threshold_to_open_again(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    breaker.before_attempt()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN


def test_a_success_resets_the_count_while_closed(clock: FakeMonotonic) -> None:
    breaker = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED


def test_a_failed_trial_reopens_it_for_a_full_cooldown(clock: FakeMonotonic) -> None:
    breaker = tripped(clock)
    clock.advance(30)
    breaker.before_attempt()
    clock.advance(5)
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert breaker.consecutive_failures == 4
    message = refusal(breaker)
    assert "4 consecutive" in message
    assert message.endswith("retry in 30 s")
    clock.advance(29.75)
    assert state(breaker) is BreakerState.OPEN
    clock.advance(0.25)
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.before_attempt()


@pytest.mark.parametrize("threshold", [1, 2, 3, 5, 10])
def test_threshold_is_configurable(clock: FakeMonotonic, threshold: int) -> None:
    breaker = make(clock, threshold=threshold)
    for _ in range(threshold - 1):
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.before_attempt()
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert f"{threshold} consecutive" in refusal(breaker)


@pytest.mark.parametrize("cooldown_s", [0.5, 5.0, 120.0])
def test_cooldown_is_configurable(clock: FakeMonotonic, cooldown_s: float) -> None:
    breaker = tripped(clock, cooldown_s=cooldown_s)
    opened_at = clock.now
    clock.now = opened_at + cooldown_s * 0.99
    assert state(breaker) is BreakerState.OPEN
    clock.now = opened_at + cooldown_s
    assert state(breaker) is BreakerState.HALF_OPEN
