"""memtasks.domain.clock: Unix milliseconds, datetimes, and the frozen test clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.clock import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    Clock,
    FrozenClock,
    from_datetime,
    system_clock,
    to_datetime,
)

pytestmark = pytest.mark.unit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEW_YEAR_2026_MS = 1_767_225_600_000
YEAR_2100_MS = 4_102_444_800_000


def test_units() -> None:
    assert (SECOND_MS, MINUTE_MS, HOUR_MS, DAY_MS) == (1_000, 60_000, 3_600_000, 86_400_000)


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, EPOCH),
        (1, datetime(1970, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC)),
        (NEW_YEAR_2026_MS, datetime(2026, 1, 1, tzinfo=UTC)),
        (NEW_YEAR_2026_MS + 1_234, datetime(2026, 1, 1, 0, 0, 1, 234_000, tzinfo=UTC)),
        (NEW_YEAR_2026_MS - 1, datetime(2025, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
    ],
)
def test_to_datetime(ms: int, expected: datetime) -> None:
    value = to_datetime(ms)
    assert value == expected
    assert value.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (EPOCH, 0),
        (datetime(2026, 1, 1, tzinfo=UTC), NEW_YEAR_2026_MS),
        (datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), NEW_YEAR_2026_MS),
        (datetime(2025, 12, 31, 19, tzinfo=timezone(timedelta(hours=-5))), NEW_YEAR_2026_MS),
        (datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), NEW_YEAR_2026_MS + 1_000),
        (datetime(2026, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC), NEW_YEAR_2026_MS + 1),
    ],
)
def test_from_datetime(value: datetime, ms: int) -> None:
    assert from_datetime(value) == ms
    assert type(from_datetime(value)) is int


@pytest.mark.parametrize("value", [datetime(2026, 1, 1), datetime(1970, 1, 1), datetime.now()])
def test_a_naive_datetime_is_refused(value: datetime) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        from_datetime(value)


@given(st.integers(min_value=0, max_value=YEAR_2100_MS))
def test_to_datetime_is_exact(ms: int) -> None:
    assert to_datetime(ms) == EPOCH + timedelta(milliseconds=ms)


@given(st.integers(min_value=0, max_value=YEAR_2100_MS // SECOND_MS))
def test_whole_seconds_round_trip(seconds: int) -> None:
    ms = seconds * SECOND_MS
    assert from_datetime(to_datetime(ms)) == ms


@given(st.integers(min_value=NEW_YEAR_2026_MS, max_value=NEW_YEAR_2026_MS + 365 * DAY_MS))
def test_milliseconds_of_2026_round_trip(ms: int) -> None:
    assert from_datetime(to_datetime(ms)) == ms


@given(st.integers(min_value=0, max_value=YEAR_2100_MS))
def test_round_trip_is_never_off_by_more_than_a_millisecond(ms: int) -> None:
    assert ms - 1 <= from_datetime(to_datetime(ms)) <= ms


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)))
def test_datetime_round_trip_keeps_the_millisecond_up_to_one(value: datetime) -> None:
    floored = value.replace(microsecond=value.microsecond // 1_000 * 1_000)
    assert floored - timedelta(milliseconds=1) <= to_datetime(from_datetime(value)) <= floored


@pytest.mark.parametrize("ms", [131_570_800, 1_079_337_347_472, 2_152_603_354_069, 2_185_078_464_549])
def test_exact_millisecond_round_trip_everywhere(ms: int) -> None:
    assert from_datetime(EPOCH + timedelta(milliseconds=ms)) == ms


def test_frozen_clock_starts_at_2026() -> None:
    clock = FrozenClock()
    assert clock.now_ms == NEW_YEAR_2026_MS
    assert clock() == NEW_YEAR_2026_MS
    assert to_datetime(clock()) == datetime(2026, 1, 1, tzinfo=UTC)


def test_frozen_clock_does_not_move_by_itself() -> None:
    clock = FrozenClock(now_ms=42)
    assert [clock() for _ in range(5)] == [42] * 5


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], 1_000),
        ([1], 1_001),
        ([SECOND_MS, MINUTE_MS], 1_000 + SECOND_MS + MINUTE_MS),
        ([HOUR_MS, -HOUR_MS], 1_000),
        ([-500], 500),
        ([0, 0], 1_000),
    ],
)
def test_frozen_clock_advance(steps: list[int], expected: int) -> None:
    clock = FrozenClock(now_ms=1_000)
    for step in steps:
        clock.advance(step)
    assert clock() == expected
    assert clock.now_ms == expected


def test_frozen_clock_is_a_clock() -> None:
    clock: Clock = FrozenClock(now_ms=7)
    assert clock() == 7


def test_system_clock_is_integer_milliseconds() -> None:
    first = system_clock()
    second = system_clock()
    assert type(first) is int
    assert first > NEW_YEAR_2026_MS - 365 * DAY_MS
    assert to_datetime(first).tzinfo is UTC
    assert second >= first - SECOND_MS
