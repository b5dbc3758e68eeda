"""The init circuit breaker, driven by a fake monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from memtasks.domain.errors import CircuitOpen
from memtasks.storage.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.unit


@dataclass
class FakeMonotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def tripped(clock: FakeMonotonic) -> CircuitBreaker:
    breaker = CircuitBreaker("sqlite:///x.db", threshold=3, cooldown_s=30, monotonic=clock)
    for _ in range(3):
        breaker.before_attempt()
        breaker.record_failure()
    return breaker


def test_fewer_failures_than_the_threshold_keep_it_closed() -> None:
    breaker = CircuitBreaker("db", threshold=3, monotonic=FakeMonotonic())
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_attempt()


def test_three_failures_open_it_and_it_says_so() -> None:
    clock = FakeMonotonic()
    breaker = tripped(clock)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(
        CircuitOpen, match=r"circuit breaker open for sqlite:///x\.db: 3 consecutive.*retry in 30 s"
    ):
        breaker.before_attempt()


def test_a_failure_while_open_rearms_the_cooldown() -> None:
    clock = FakeMonotonic()
    breaker = tripped(clock)
    clock.now += 20
    breaker.record_failure()
    clock.now += 20
    assert breaker.state is BreakerState.OPEN, "40 s after tripping, but only 20 s after the last failure"
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_trial_through() -> None:
    clock = FakeMonotonic()
    breaker = tripped(clock)
    clock.now += 30
    breaker.before_attempt()
    with pytest.raises(CircuitOpen, match="trial initialisation is in progress"):
        breaker.before_attempt()


def test_success_closes_and_resets() -> None:
    clock = FakeMonotonic()
    breaker = tripped(clock)
    clock.now += 30
    breaker.before_attempt()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_failure_of_the_trial_reopens_it() -> None:
    clock = FakeMonotonic()
    breaker = tripped(clock)
    clock.now += 30
    breaker.before_attempt()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_attempt()


@pytest.mark.parametrize("threshold", [1, 2, 5])
def test_threshold_is_configurable(threshold: int) -> None:
    breaker = CircuitBreaker("db", threshold=threshold, monotonic=FakeMonotonic())
    for _ in range(threshold - 1):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
