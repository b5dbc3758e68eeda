"""memtasks.domain.dedupe: one dedupe-key builder per job kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.clock import HOUR_MS, MINUTE_MS, from_datetime
from memtasks.domain.dedupe import (
    REEMBED_BACKFILL_MAX_ATTEMPTS,
    append_source_key,
    append_topic_key,
    extract_key,
    flush_stale_key,
    reembed_backfill_key,
    seal_document_key,
    seal_key,
)
from memtasks.domain.jobs import check_dedupe_key

pytestmark = pytest.mark.unit

BLOCK_MS = 3 * HOUR_MS
YEAR_2100_MS = 4_102_444_800_000


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Unix milliseconds of a UTC wall time, built with from_datetime."""
    return from_datetime(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (extract_key("chunk-1"), "extract:chunk-1"),
        (append_source_key("src-1", "leaf"), "append:source:src-1:leaf"),
        (append_topic_key("tree-1", "root"), "append:topic:tree-1:root"),
        (seal_key("tree-1", 0), "seal:tree-1:0"),
        (seal_key("tree-1", 3), "seal:tree-1:3"),
        (reembed_backfill_key("model-v2:1536"), "reembed_backfill:model-v2:1536"),
        (seal_document_key("doc-1"), "seal_doc:doc-1"),
        (seal_document_key("doc-1", None), "seal_doc:doc-1"),
        (seal_document_key("doc-1", 2), "seal_doc:doc-1@2"),
        (seal_document_key("doc-1", "v7"), "seal_doc:doc-1@v7"),
        (seal_document_key("doc-1", 0), "seal_doc:doc-1@0"),
        (seal_document_key("doc-1", ""), "seal_doc:doc-1@"),
    ],
)
def test_key_builders(key: str, expected: str) -> None:
    assert key == expected
    assert check_dedupe_key(key) == key


def test_version_zero_is_not_the_same_as_no_version() -> None:
    assert seal_document_key("d", 0) != seal_document_key("d")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (append_source_key("x", "n"), append_topic_key("x", "n")),
        (seal_key("t", 1), seal_key("t", 2)),
        (seal_document_key("d", 1), seal_document_key("d", 2)),
        (extract_key("a"), extract_key("b")),
    ],
)
def test_different_work_gets_different_keys(first: str, second: str) -> None:
    assert first != second


def test_reembed_backfill_max_attempts() -> None:
    assert REEMBED_BACKFILL_MAX_ATTEMPTS == 3


# --- flush_stale: one key per 3-hour UTC block -----------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "second", "extra_ms", "block"),
    [
        (0, 0, 0, 0, 0),
        (0, 0, 0, 1, 0),
        (1, 30, 0, 0, 0),
        (2, 59, 0, 0, 0),
        (2, 59, 59, 999, 0),
        (3, 0, 0, 0, 1),
        (5, 59, 59, 999, 1),
        (6, 0, 0, 0, 2),
        (9, 0, 0, 0, 3),
        (11, 59, 0, 0, 3),
        (12, 0, 0, 0, 4),
        (15, 0, 0, 0, 5),
        (18, 0, 0, 0, 6),
        (20, 59, 59, 999, 6),
        (21, 0, 0, 0, 7),
        (23, 59, 0, 0, 7),
        (23, 59, 59, 999, 7),
    ],
)
def test_flush_stale_blocks(hour: int, minute: int, second: int, extra_ms: int, block: int) -> None:
    now = utc(2026, 1, 1, hour, minute, second) + extra_ms
    assert flush_stale_key(now) == f"flush_stale:2026-01-01-h{block}"


def test_the_first_block_covers_midnight_to_two_fifty_nine() -> None:
    start = utc(2026, 1, 1, 0, 0, 0)
    assert flush_stale_key(start) == flush_stale_key(start + BLOCK_MS - 1) == "flush_stale:2026-01-01-h0"
    assert flush_stale_key(start + BLOCK_MS) == "flush_stale:2026-01-01-h1"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((2025, 12, 31), "flush_stale:2026-01-01-h0"),
        ((2026, 2, 28), "flush_stale:2026-03-01-h0"),
        ((2028, 2, 28), "flush_stale:2028-02-29-h0"),
        ((2028, 2, 29), "flush_stale:2028-03-01-h0"),
        ((2026, 6, 30), "flush_stale:2026-07-01-h0"),
    ],
)
def test_the_date_changes_at_utc_midnight(before: tuple[int, int, int], after: str) -> None:
    last_ms = utc(*before, 23, 59, 59) + 999
    year, month, day = before
    assert flush_stale_key(last_ms) == f"flush_stale:{year:04d}-{month:02d}-{day:02d}-h7"
    assert flush_stale_key(last_ms + 1) == after


def test_the_block_is_taken_in_utc_not_local_time() -> None:
    # 03:00 at UTC+05:00 is 22:00 the day before in UTC.
    plus_five = timezone(timedelta(hours=5))
    now = from_datetime(datetime(2026, 1, 1, 3, 0, tzinfo=plus_five))
    assert now == utc(2025, 12, 31, 22, 0, 0)
    assert flush_stale_key(now) == "flush_stale:2025-12-31-h7"


def test_the_epoch_is_block_zero() -> None:
    assert flush_stale_key(0) == "flush_stale:1970-01-01-h0"


def test_one_day_has_eight_keys() -> None:
    start = utc(2026, 3, 14, 0, 0, 0)
    keys = [flush_stale_key(start + n * 10 * MINUTE_MS) for n in range(24 * 6)]
    assert len(keys) == 144
    assert sorted(set(keys)) == [f"flush_stale:2026-03-14-h{n}" for n in range(8)]


@given(st.integers(min_value=0, max_value=YEAR_2100_MS))
def test_every_moment_of_a_block_shares_its_key(now: int) -> None:
    block_start = now - now % BLOCK_MS
    key = flush_stale_key(now)
    assert key == flush_stale_key(block_start)
    assert key == flush_stale_key(block_start + BLOCK_MS - 1)
    assert key != flush_stale_key(block_start + BLOCK_MS)
    assert check_dedupe_key(key) == key


@given(st.integers(min_value=0, max_value=YEAR_2100_MS))
def test_the_key_names_the_utc_date_and_block(now: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now)
    expected = f"flush_stale:{moment:%Y-%m-%d}-h{moment.hour // 3}"
    assert flush_stale_key(now) == expected
