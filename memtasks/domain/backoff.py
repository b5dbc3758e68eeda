"""Retry policy: exponential backoff with jitter, and the settle decision for a failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memtasks.domain.clock import HOUR_MS, MINUTE_MS
from memtasks.domain.jobs import FailureClass

DEFAULT_BASE_MS = MINUTE_MS
DEFAULT_CAP_MS = HOUR_MS
DEFAULT_MAX_ATTEMPTS = 5


def backoff_ms(attempts: int, *, base_ms: int = DEFAULT_BASE_MS, cap_ms: int = DEFAULT_CAP_MS) -> int:
    """Delay before the next try after ``attempts`` tries: min(base × 2^(attempts−1), cap).

    attempt 1 → 60 s, 2 → 120 s, 3 → 240 s, … capped at 1 h.
    """
    exponent = min(max(attempts, 1) - 1, 40)
    return min(base_ms * (1 << exponent), cap_ms)


def with_jitter(delay_ms: int, fraction: float, random: Callable[[], float]) -> int:
    """``delay_ms`` plus up to ``fraction`` of it, drawn from ``random`` ∈ [0, 1)."""
    if fraction <= 0:
        return delay_ms
    return delay_ms + int(delay_ms * fraction * random())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_ms: int = DEFAULT_BASE_MS
    cap_ms: int = DEFAULT_CAP_MS
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base_ms <= 0 or self.cap_ms < self.base_ms:
            raise ValueError("backoff needs 0 < base ≤ cap")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be a fraction between 0 and 1")

    def delay_ms(self, attempts: int, random: Callable[[], float]) -> int:
        return with_jitter(
            backoff_ms(attempts, base_ms=self.base_ms, cap_ms=self.cap_ms), self.jitter, random
        )


@dataclass(frozen=True, slots=True)
class FailureDecision:
    """What a failed attempt becomes: terminal, or ready again after ``retry_in_ms``."""

    terminal: bool
    retry_in_ms: int | None


def decide_failure(
    *,
    attempts: int,
    max_attempts: int,
    failure_class: FailureClass,
    policy: RetryPolicy,
    random: Callable[[], float],
) -> FailureDecision:
    """Terminal when the failure is unrecoverable or the attempts are spent, else retry."""
    if failure_class is FailureClass.UNRECOVERABLE or attempts >= max_attempts:
        return FailureDecision(terminal=True, retry_in_ms=None)
    return FailureDecision(terminal=False, retry_in_ms=policy.delay_ms(attempts, random))
