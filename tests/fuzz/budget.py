"""The fuzz tier's example budget: every fuzz test declares how many examples it runs, and
counts the examples it really ran, so the tier's total is checked, not assumed.

``@fuzz(n)`` goes above ``@given``: it sets ``max_examples=n`` (no deadline, derandomized,
no example database, so CI runs the same examples every time) and wraps Hypothesis's
inner test to count each example that reaches the test body. ``runs`` says how many times
pytest calls the test (its parametrizations, e.g. 2 for SQLite and PostgreSQL).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

TIER_MINIMUM = 10_000
PLANNED: dict[str, int] = {}
"""Test → examples it must run in one session (max_examples × runs)."""
EXECUTED: Counter[str] = Counter()
"""Test → examples that reached its body in this session."""


def fuzz(examples: int, *, runs: int = 1, suppress: Sequence[HealthCheck] = ()) -> Callable[[F], F]:
    def apply(test: F) -> F:
        name = f"{test.__module__.rsplit('.', 1)[-1]}::{test.__name__}"
        inner = test.hypothesis.inner_test  # type: ignore[attr-defined]

        @functools.wraps(inner)
        def counted(*args: Any, **kwargs: Any) -> Any:
            EXECUTED[name] += 1
            return inner(*args, **kwargs)

        test.hypothesis.inner_test = counted  # type: ignore[attr-defined]
        PLANNED[name] = examples * runs
        configured: F = settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            print_blob=True,
            suppress_health_check=list(suppress),
        )(test)
        return configured

    return apply


T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def attempt(call: Callable[[], T], error: type[E]) -> T | E:
    """``call()``'s value, or the ``error`` it raised (any other exception propagates): for
    properties of the form "accepted, or refused with this kind of error"."""
    try:
        return call()
    except error as exc:
        return exc


__all__ = ["EXECUTED", "PLANNED", "TIER_MINIMUM", "attempt", "fuzz"]
