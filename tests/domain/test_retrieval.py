"""The retrieval-failure record: validation, truncation, query length, retention cutoff."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.clock import DAY_MS
from memtasks.domain.errors import ValidationError
from memtasks.domain.retrieval import (
    CODE_INVALID,
    CODE_RETENTION,
    CODE_UNKNOWN_TYPE,
    DEFAULT_RETENTION_MS,
    ERROR_CONTEXT_MAX_CHARS,
    QUERY_TEXT_MAX_CHARS,
    FailureType,
    RetrievalFailure,
    retention_cutoff,
    utf8_len,
)

pytestmark = pytest.mark.unit


def record(**overrides: Any) -> RetrievalFailure:
    fields: dict[str, Any] = {
        "failure_type": FailureType.NO_HIT,
        "retrieval_strategy": "semantic",
        "query_text": "hello world",
        "query_len": 11,
    } | overrides
    return RetrievalFailure(**fields)


def test_defaults_and_types() -> None:
    r = RetrievalFailure.new("low_confidence", "semantic", "q", top_score=1, confidence_threshold=0.7)
    assert r.failure_type is FailureType.LOW_CONFIDENCE
    assert isinstance(r.top_score, float) and r.top_score == 1.0
    assert r.confidence_threshold == 0.7
    assert (r.conversation_id, r.turn_index, r.result_count, r.latency_ms) == (None, 0, 0, 0)
    assert r.edge_types == ()
    assert r.error_context is None
    assert r.created_at_ms is None


def test_record_is_frozen() -> None:
    r = record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.query_text = "other"  # type: ignore[misc]


def test_query_text_is_truncated_to_512_characters_and_query_len_is_original_bytes() -> None:
    query = "é" * 1000  # 2 bytes per character
    r = RetrievalFailure.new(FailureType.NO_HIT, "semantic", query)
    assert len(r.query_text) == QUERY_TEXT_MAX_CHARS == 512
    assert r.query_text == "é" * 512
    assert r.query_len == 2000


def test_query_of_exactly_512_characters_is_kept_whole() -> None:
    query = "x" * 512
    assert RetrievalFailure.new("no_hit", "semantic", query).query_text == query
    assert len(RetrievalFailure.new("no_hit", "semantic", query + "y").query_text) == 512


def test_direct_construction_truncates_too() -> None:
    r = record(query_text="x" * 1000, query_len=1000)
    assert len(r.query_text) == 512
    assert r.query_len == 1000


def test_error_context_is_truncated_to_256_characters() -> None:
    r = RetrievalFailure.new("error", "graph", "q", error_context="💥" * 300)
    assert r.error_context == "💥" * ERROR_CONTEXT_MAX_CHARS
    assert ERROR_CONTEXT_MAX_CHARS == 256


def test_unknown_failure_type_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match=r"unknown failure type 'miss'.*no_hit, low_confidence") as info:
        RetrievalFailure.new("miss", "semantic", "q")
    assert info.value.code == CODE_UNKNOWN_TYPE
    with pytest.raises(ValidationError, match="unknown failure type"):
        record(failure_type="NO_HIT")


def test_failure_type_given_as_text_is_coerced() -> None:
    assert record(failure_type="timeout").failure_type is FailureType.TIMEOUT


@pytest.mark.parametrize("field", ["turn_index", "result_count", "latency_ms", "query_len", "created_at_ms"])
def test_negative_counts_are_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field} must not be negative") as info:
        record(**{field: -1})
    assert info.value.code == CODE_INVALID


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("turn_index", True, "must be an integer"),
        ("result_count", 1.5, "must be an integer"),
        ("latency_ms", 2**31, "larger than"),
        ("top_score", float("nan"), "must be finite"),
        ("confidence_threshold", float("inf"), "must be finite"),
        ("top_score", "0.3", "must be a number"),
        ("retrieval_strategy", "", "non-empty string"),
        ("retrieval_strategy", "   ", "non-empty string"),
        ("retrieval_strategy", "s" * 65, "at most 64"),
        ("conversation_id", "c" * 65, "at most 64"),
        ("conversation_id", "", "non-empty string"),
        ("conversation_id", "a\x00b", "NUL"),
        ("edge_types", "mentions", "list of strings"),
        ("edge_types", ["ok", 3], "non-empty strings"),
        ("error_context", 42, "string or None"),
        ("query_text", None, "must be a string"),
    ],
)
def test_invalid_fields_are_refused(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as info:
        record(**{field: value})
    assert info.value.code == CODE_INVALID
    assert field in str(info.value)


def test_query_len_shorter_than_the_query_is_refused() -> None:
    with pytest.raises(ValidationError, match="query_len 3 is less than the 11 characters"):
        record(query_len=3)


def test_edge_types_become_a_tuple() -> None:
    r = RetrievalFailure.new("no_hit", "graph", "q", edge_types=["mentions", "causes"])
    assert r.edge_types == ("mentions", "causes")
    assert record(edge_types=["a"]).edge_types == ("a",)


def test_text_no_database_accepts_is_replaced_one_for_one() -> None:
    r = RetrievalFailure.new("no_hit", "semantic", "a\x00b\ud800c", error_context="e\x00")
    assert r.query_text == "a\ufffdb\ufffdc"
    assert r.query_len == 1 + 1 + 1 + 3 + 1  # the original's bytes (surrogate as 3)
    assert r.error_context == "e\ufffd"
    r.query_text.encode("utf-8")  # storable


def test_stamped_sets_the_time_once() -> None:
    r = RetrievalFailure.new("no_hit", "semantic", "q\x00" * 600)
    stamped = r.stamped(1_000)
    assert stamped.created_at_ms == 1_000
    assert stamped.stamped(2_000).created_at_ms == 1_000
    assert (stamped.query_text, stamped.query_len) == (r.query_text, r.query_len)


def test_retention_cutoff_boundary_and_validation() -> None:
    now = 100 * DAY_MS
    assert DEFAULT_RETENTION_MS == 90 * DAY_MS
    assert retention_cutoff(now, DEFAULT_RETENTION_MS) == 10 * DAY_MS
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="positive number of milliseconds") as info:
            retention_cutoff(now, bad)  # type: ignore[arg-type]
        assert info.value.code == CODE_RETENTION


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_truncation_keeps_a_prefix_and_measures_the_original(query: str) -> None:
    r = RetrievalFailure.new("no_hit", "semantic", query)
    assert len(r.query_text) == min(len(query), 512)
    assert query.startswith(r.query_text)
    assert r.query_len == len(query.encode("utf-8")) == utf8_len(query)


@given(st.text(), st.one_of(st.none(), st.text()))
def test_any_text_makes_a_storable_record(query: str, context: str | None) -> None:
    r = RetrievalFailure.new("error", "semantic", query, error_context=context)
    assert len(r.query_text) <= 512
    assert "\x00" not in r.query_text
    r.query_text.encode("utf-8")
    if context is not None:
        assert r.error_context is not None and len(r.error_context) <= 256
        r.error_context.encode("utf-8")
