"""memtasks.domain.backoff: exponential backoff, jitter, the retry policy and the failure decision."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.backoff import (
    DEFAULT_BASE_MS,
    DEFAULT_CAP_MS,
    DEFAULT_MAX_ATTEMPTS,
    FailureDecision,
    RetryPolicy,
    backoff_ms,
    decide_failure,
    with_jitter,
)
from memtasks.domain.jobs import FailureClass

pytestmark = pytest.mark.unit

CAP = 3_600_000


def no_random() -> float:
    raise AssertionError("randomness must not be drawn here")


def fixed(value: float) -> Any:
    def draw() -> float:
        return value

    return draw


def test_defaults() -> None:
    assert DEFAULT_BASE_MS == 60_000
    assert DEFAULT_CAP_MS == CAP
    assert DEFAULT_MAX_ATTEMPTS == 5


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        (1, 60_000),
        (2, 120_000),
        (3, 240_000),
        (4, 480_000),
        (5, 960_000),
        (6, 1_920_000),
        (7, CAP),  # 3 840 000 capped
        (8, CAP),
        (41, CAP),
        (100, CAP),
        (10_000, CAP),
        (10**18, CAP),
        (sys.maxsize, CAP),
        (2**200, CAP),
    ],
)
def test_backoff_doubles_from_a_minute_up_to_an_hour(attempts: int, expected: int) -> None:
    assert backoff_ms(attempts) == expected


@pytest.mark.parametrize("attempts", [0, -1, -100, -(2**70)])
def test_attempt_zero_or_less_is_treated_as_one(attempts: int) -> None:
    assert backoff_ms(attempts) == backoff_ms(1) == 60_000


@pytest.mark.parametrize(
    ("attempts", "base_ms", "cap_ms", "expected"),
    [
        (1, 1_000, 10_000, 1_000),
        (3, 1_000, 10_000, 4_000),
        (4, 1_000, 10_000, 8_000),
        (5, 1_000, 10_000, 10_000),
        (1, 500, 500, 500),
        (9, 500, 500, 500),
        (10, 1_000, 10**30, 512_000),
    ],
)
def test_backoff_with_a_custom_base_and_cap(attempts: int, base_ms: int, cap_ms: int, expected: int) -> None:
    assert backoff_ms(attempts, base_ms=base_ms, cap_ms=cap_ms) == expected


def test_growth_stops_at_two_to_the_forty_so_huge_attempts_stay_cheap() -> None:
    assert backoff_ms(41, base_ms=1, cap_ms=10**30) == 2**40
    assert backoff_ms(10**100, base_ms=1, cap_ms=10**30) == 2**40


def test_backoff_returns_an_int() -> None:
    assert type(backoff_ms(3)) is int
    assert type(backoff_ms(10**9)) is int


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_backoff_is_monotonic_and_capped(attempts: int) -> None:
    here, after = backoff_ms(attempts), backoff_ms(attempts + 1)
    assert 60_000 <= here <= after <= CAP


@given(
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=-10, max_value=10**6),
)
def test_backoff_is_monotonic_and_bounded_for_any_policy(base_ms: int, extra_ms: int, attempts: int) -> None:
    cap_ms = base_ms + extra_ms
    here, after = (
        backoff_ms(attempts, base_ms=base_ms, cap_ms=cap_ms),
        backoff_ms(attempts + 1, base_ms=base_ms, cap_ms=cap_ms),
    )
    assert base_ms <= here <= after <= cap_ms
    assert after <= 2 * here


@given(st.integers(min_value=1, max_value=6))
def test_backoff_doubles_below_the_cap(attempts: int) -> None:
    assert backoff_ms(attempts + 1) == min(2 * backoff_ms(attempts), CAP)


# --- jitter ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0, 0.0, -0.5, -1])
def test_no_jitter_draws_nothing(fraction: float) -> None:
    assert with_jitter(60_000, fraction, no_random) == 60_000


@pytest.mark.parametrize(
    ("delay", "fraction", "draw", "expected"),
    [
        (60_000, 0.1, 0.0, 60_000),
        (60_000, 0.1, 0.5, 63_000),
        (60_000, 0.1, 0.999_999, 65_999),
        (60_000, 1.0, 0.5, 90_000),
        (60_000, 1.0, 0.999_999, 119_999),
        (0, 0.5, 0.5, 0),
        (7, 0.1, 0.9, 7),  # int(0.63) adds nothing
    ],
)
def test_jitter_values(delay: int, fraction: float, draw: float, expected: int) -> None:
    assert with_jitter(delay, fraction, fixed(draw)) == expected


@given(
    st.integers(min_value=0, max_value=10**10),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_jitter_stays_within_its_fraction(delay: int, fraction: float, draw: float) -> None:
    jittered = with_jitter(delay, fraction, fixed(draw))
    assert type(jittered) is int
    assert delay <= jittered <= delay + delay * fraction


# --- the policy ------------------------------------------------------------------------


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert (policy.base_ms, policy.cap_ms, policy.jitter) == (60_000, CAP, 0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"jitter": 0},
        {"jitter": 1},
        {"jitter": 0.5},
        {"base_ms": 1, "cap_ms": 1},
        {"base_ms": 1_000, "cap_ms": 1_000},
        {"base_ms": 1, "cap_ms": 10**12},
    ],
)
def test_valid_policies(kwargs: dict[str, Any]) -> None:
    policy = RetryPolicy(**kwargs)
    for name, value in kwargs.items():
        assert getattr(policy, name) == value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_ms": 0}, "0 < base ≤ cap"),
        ({"base_ms": -1}, "0 < base ≤ cap"),
        ({"base_ms": 1_000, "cap_ms": 999}, "0 < base ≤ cap"),
        ({"cap_ms": 59_999}, "0 < base ≤ cap"),
        ({"cap_ms": 0}, "0 < base ≤ cap"),
        ({"jitter": -0.01}, "jitter must be a fraction between 0 and 1"),
        ({"jitter": 1.01}, "jitter must be a fraction between 0 and 1"),
        ({"jitter": 2}, "jitter must be a fraction between 0 and 1"),
        ({"jitter": math.nan}, "jitter must be a fraction between 0 and 1"),
        ({"jitter": math.inf}, "jitter must be a fraction between 0 and 1"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("attempts", [1, 2, 3, 7, 100])
def test_policy_without_jitter_is_the_plain_backoff(attempts: int) -> None:
    assert RetryPolicy(jitter=0).delay_ms(attempts, no_random) == backoff_ms(attempts)


def test_policy_uses_its_own_base_and_cap() -> None:
    policy = RetryPolicy(base_ms=1_000, cap_ms=5_000, jitter=0)
    assert [policy.delay_ms(n, no_random) for n in range(1, 6)] == [1_000, 2_000, 4_000, 5_000, 5_000]


def test_policy_jitter_is_applied_on_top_of_the_backoff() -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.delay_ms(2, fixed(0.5)) == 120_000 + 30_000
    assert policy.delay_ms(2, fixed(0.0)) == 120_000


# --- the failure decision --------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2, 4, 5, 9])
def test_an_unrecoverable_failure_is_terminal_at_once(attempts: int) -> None:
    decision = decide_failure(
        attempts=attempts,
        max_attempts=5,
        failure_class=FailureClass.UNRECOVERABLE,
        policy=RetryPolicy(),
        random=no_random,
    )
    assert decision == FailureDecision(terminal=True, retry_in_ms=None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(5, 5), (6, 5), (1, 1), (100, 3), (3, 3)])
def test_spent_attempts_are_terminal(attempts: int, max_attempts: int) -> None:
    decision = decide_failure(
        attempts=attempts,
        max_attempts=max_attempts,
        failure_class=FailureClass.TRANSIENT,
        policy=RetryPolicy(),
        random=no_random,
    )
    assert decision.terminal is True
    assert decision.retry_in_ms is None


@pytest.mark.parametrize(("attempts", "retry_in_ms"), [(1, 60_000), (2, 120_000), (3, 240_000), (4, 480_000)])
def test_a_transient_failure_with_attempts_left_retries_after_the_backoff(
    attempts: int, retry_in_ms: int
) -> None:
    decision = decide_failure(
        attempts=attempts,
        max_attempts=5,
        failure_class=FailureClass.TRANSIENT,
        policy=RetryPolicy(jitter=0),
        random=no_random,
    )
    assert decision == FailureDecision(terminal=False, retry_in_ms=retry_in_ms)


def test_a_retry_is_jittered_by_the_policy() -> None:
    decision = decide_failure(
        attempts=2,
        max_attempts=5,
        failure_class=FailureClass.TRANSIENT,
        policy=RetryPolicy(jitter=0.1),
        random=fixed(0.5),
    )
    assert decision == FailureDecision(terminal=False, retry_in_ms=120_000 + 6_000)


@given(
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=100),
    st.sampled_from(list(FailureClass)),
)
def test_decision_is_terminal_exactly_when_it_should_be(
    attempts: int, max_attempts: int, failure_class: FailureClass
) -> None:
    decision = decide_failure(
        attempts=attempts,
        max_attempts=max_attempts,
        failure_class=failure_class,
        policy=RetryPolicy(jitter=0),
        random=no_random,
    )
    should_end = failure_class is FailureClass.UNRECOVERABLE or attempts >= max_attempts
    assert decision.terminal is should_end
    if should_end:
        assert decision.retry_in_ms is None
    else:
        assert decision.retry_in_ms == backoff_ms(attempts)
