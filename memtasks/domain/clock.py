"""Time as integer milliseconds since the Unix epoch (UTC): one convention everywhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

Clock = Callable[[], int]
"""A clock returns the current time in Unix milliseconds."""

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def system_clock() -> int:
    """The wall clock in Unix milliseconds."""
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """Unix milliseconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def from_datetime(value: datetime) -> int:
    """An aware datetime to Unix milliseconds (naive datetimes are refused)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: attach a timezone (UTC) first")
    return (value - EPOCH) // timedelta(milliseconds=1)


@dataclass
class FrozenClock:
    """A clock for tests: it only moves when told to."""

    now_ms: int = field(default=1_767_225_600_000)  # 2026-01-01T00:00:00Z

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


MAX_TIMESTAMP_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the latest instant a job may be scheduled for."""
