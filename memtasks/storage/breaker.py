"""The init circuit breaker: stop hammering a database whose initialisation keeps failing.

Closed → (``threshold`` consecutive failures) → open for ``cooldown_s`` (re-armed by a
failure while open) → half-open: one trial is let through; success closes the breaker,
failure opens it again. Every state change happens under one lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from memtasks.domain.errors import CircuitOpen


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int = 3,
        cooldown_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state_locked()

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._trial_in_flight or self._monotonic() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_attempt(self) -> None:
        """Raise :class:`CircuitOpen` unless an attempt may go ahead now."""
        with self._lock:
            state = self._state_locked()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            assert self._opened_at is not None
            wait = max(0.0, self.cooldown_s - (self._monotonic() - self._opened_at))
            detail = (
                "a trial initialisation is in progress" if self._trial_in_flight else f"retry in {wait:.0f} s"
            )
            raise CircuitOpen(
                f"circuit breaker open for {self.name}: {self._failures} consecutive "
                f"initialisation failures; {detail}"
            )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = self._monotonic()
