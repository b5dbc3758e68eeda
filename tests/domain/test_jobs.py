"""memtasks.domain.jobs: kinds, statuses, transitions, payload and dedupe-key validation."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.errors import (
    IllegalTransition,
    MalformedPayload,
    MemtasksError,
    UnknownJobKind,
    ValidationError,
)
from memtasks.domain.jobs import (
    ACTIVE_STATUSES,
    ALLOWED_TRANSITIONS,
    DEFAULT_PRIORITY,
    LLM_BOUND_KINDS,
    MAX_DEDUPE_KEY_CHARS,
    MAX_PAYLOAD_BYTES,
    RETIRED_KINDS,
    TERMINAL_STATUSES,
    JobKind,
    JobStatus,
    NewJob,
    check_dedupe_key,
    check_transition,
    decode_payload,
    encode_payload,
    is_retired_kind,
)

pytestmark = pytest.mark.unit

WIRE_KINDS = ["extract_chunk", "append_buffer", "seal", "flush_stale", "reembed_backfill", "seal_document"]


def nested_dicts(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_lists(depth: int) -> dict[str, Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return {"a": value}


def keys_in_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json.loads`` hook that checks every object's keys are written in sorted order."""
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys)
    return dict(pairs)


# --- kinds -----------------------------------------------------------------------------


def test_the_kinds_are_exactly_the_wire_strings() -> None:
    assert sorted(kind.value for kind in JobKind) == sorted(WIRE_KINDS)


@pytest.mark.parametrize("wire", WIRE_KINDS)
def test_parse_returns_the_kind_named(wire: str) -> None:
    kind = JobKind.parse(wire)
    assert isinstance(kind, JobKind)
    assert kind.value == wire
    assert kind == wire


@pytest.mark.parametrize("kind", list(JobKind))
def test_parse_accepts_a_kind_itself(kind: JobKind) -> None:
    assert JobKind.parse(kind) is kind


@pytest.mark.parametrize(
    "wire", ["x", "", "SEAL", "Seal", " seal", "seal ", "seal\x00", "topic_route", "digest_daily", "extract"]
)
def test_parse_refuses_an_unknown_kind_naming_it(wire: str) -> None:
    with pytest.raises(UnknownJobKind) as info:
        JobKind.parse(wire)
    assert str(info.value) == f"unknown job kind {wire!r}"
    assert info.value.kind == wire
    assert info.value.code == "job.kind.unknown"


def test_unknown_kind_message_for_x() -> None:
    with pytest.raises(UnknownJobKind, match=r"^unknown job kind 'x'$"):
        JobKind.parse("x")


def test_unknown_kind_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        JobKind.parse("nope")
    assert issubclass(UnknownJobKind, MemtasksError)


@pytest.mark.parametrize(
    ("kind", "priority"),
    [
        (JobKind.SEAL, 1),
        (JobKind.FLUSH_STALE, 2),
        (JobKind.APPEND_BUFFER, 3),
        (JobKind.EXTRACT_CHUNK, 4),
        (JobKind.REEMBED_BACKFILL, 4),
        (JobKind.SEAL_DOCUMENT, 4),
    ],
)
def test_kind_priority(kind: JobKind, priority: int) -> None:
    assert kind.priority == priority


def test_default_priority_is_the_lowest() -> None:
    assert DEFAULT_PRIORITY == 4
    assert all(kind.priority <= DEFAULT_PRIORITY for kind in JobKind)


def test_claim_order_puts_seal_then_flush_stale_then_append_buffer_first() -> None:
    ordered = sorted(JobKind, key=lambda kind: kind.priority)
    assert ordered[:3] == [JobKind.SEAL, JobKind.FLUSH_STALE, JobKind.APPEND_BUFFER]
    assert JobKind.SEAL.priority < JobKind.FLUSH_STALE.priority < JobKind.APPEND_BUFFER.priority
    assert JobKind.APPEND_BUFFER.priority < JobKind.EXTRACT_CHUNK.priority


@pytest.mark.parametrize(
    ("kind", "llm_bound"),
    [
        (JobKind.EXTRACT_CHUNK, True),
        (JobKind.SEAL, True),
        (JobKind.REEMBED_BACKFILL, True),
        (JobKind.SEAL_DOCUMENT, True),
        (JobKind.APPEND_BUFFER, False),
        (JobKind.FLUSH_STALE, False),
    ],
)
def test_llm_bound(kind: JobKind, llm_bound: bool) -> None:
    assert kind.llm_bound is llm_bound
    assert (kind in LLM_BOUND_KINDS) is llm_bound


@pytest.mark.parametrize("kind", ["topic_route", "digest_daily"])
def test_retired_kinds_are_retired_and_not_parseable(kind: str) -> None:
    assert is_retired_kind(kind) is True
    with pytest.raises(UnknownJobKind):
        JobKind.parse(kind)


def test_retired_kinds_are_exactly_two() -> None:
    assert frozenset({"topic_route", "digest_daily"}) == RETIRED_KINDS


@pytest.mark.parametrize("kind", [*WIRE_KINDS, "", "x", "TOPIC_ROUTE"])
def test_live_and_unknown_kinds_are_not_retired(kind: str) -> None:
    assert is_retired_kind(kind) is False


# --- statuses and transitions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "terminal", "active"),
    [
        (JobStatus.READY, False, True),
        (JobStatus.RUNNING, False, True),
        (JobStatus.DONE, True, False),
        (JobStatus.FAILED, True, False),
        (JobStatus.CANCELLED, True, False),
    ],
)
def test_status_terminal_and_active(status: JobStatus, terminal: bool, active: bool) -> None:
    assert status.terminal is terminal
    assert status.active is active


def test_terminal_and_active_partition_the_statuses() -> None:
    assert TERMINAL_STATUSES.isdisjoint(ACTIVE_STATUSES)
    assert frozenset(JobStatus) == TERMINAL_STATUSES | ACTIVE_STATUSES
    assert frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED}) == TERMINAL_STATUSES
    assert frozenset({JobStatus.READY, JobStatus.RUNNING}) == ACTIVE_STATUSES


EXPECTED_TRANSITIONS = {
    (JobStatus.READY, JobStatus.RUNNING),
    (JobStatus.READY, JobStatus.CANCELLED),
    (JobStatus.RUNNING, JobStatus.DONE),
    (JobStatus.RUNNING, JobStatus.FAILED),
    (JobStatus.RUNNING, JobStatus.READY),
    (JobStatus.FAILED, JobStatus.READY),
}


def test_allowed_transitions_table_is_the_documented_one() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobStatus)
    table = {(current, target) for current, targets in ALLOWED_TRANSITIONS.items() for target in targets}
    assert table == EXPECTED_TRANSITIONS


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobStatus, JobStatus)))
def test_check_transition_follows_the_table(current: JobStatus, target: JobStatus) -> None:
    if target in ALLOWED_TRANSITIONS[current]:
        assert (current, target) in EXPECTED_TRANSITIONS
        check_transition(current, target)  # allowed: no exception
    else:
        assert (current, target) not in EXPECTED_TRANSITIONS
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target)
        assert str(info.value) == f"job status {current.value} → {target.value} is not allowed"


@pytest.mark.parametrize("status", list(JobStatus))
def test_no_status_transitions_to_itself(status: JobStatus) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(status, status)


@pytest.mark.parametrize("status", [JobStatus.DONE, JobStatus.CANCELLED])
def test_done_and_cancelled_are_final(status: JobStatus) -> None:
    assert ALLOWED_TRANSITIONS[status] == frozenset()


# --- payloads --------------------------------------------------------------------------


def test_encode_is_canonical_sorted_compact_json() -> None:
    payload = {"b": 1, "a": {"d": [3, {"z": None, "y": True}], "c": "x"}}
    assert encode_payload(payload) == '{"a":{"c":"x","d":[3,{"y":true,"z":null}]},"b":1}'


def test_encode_ignores_insertion_order() -> None:
    assert encode_payload({"a": 1, "b": 2}) == encode_payload({"b": 2, "a": 1})


def test_encode_of_an_empty_object() -> None:
    assert encode_payload({}) == "{}"
    assert decode_payload("{}") == {}


@pytest.mark.parametrize("text", ["é", "✓", "日本語", "😀", "\x00", "\u2028"])
def test_unusual_text_round_trips(text: str) -> None:
    payload = {text: text}
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    "payload",
    [
        {"a": math.nan},
        {"a": math.inf},
        {"a": -math.inf},
        {"a": [1.0, math.nan]},
        {"a": {"b": math.inf}},
    ],
)
def test_encode_refuses_nan_and_infinity(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload, match="not JSON-serialisable") as info:
        encode_payload(payload)
    assert info.value.code == "job.payload.malformed"


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [([], "list"), ([("a", 1)], "list"), ("{}", "str"), (1, "int"), (None, "NoneType"), ((), "tuple")],
)
def test_encode_refuses_a_non_object(payload: Any, type_name: str) -> None:
    with pytest.raises(MalformedPayload, match=f"expected a JSON object, got {type_name}$"):
        encode_payload(payload)


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", 1j])
def test_encode_refuses_values_json_cannot_hold(value: Any) -> None:
    with pytest.raises(MalformedPayload, match="not JSON-serialisable"):
        encode_payload({"a": value})


def test_encode_refuses_keys_that_cannot_be_sorted_together() -> None:
    with pytest.raises(MalformedPayload, match="object keys must be strings"):
        encode_payload({1: "a", "b": "c"})  # type: ignore[dict-item]


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    overhead = len('{"a":""}')
    payload = {"a": "x" * (MAX_PAYLOAD_BYTES - overhead)}
    text = encode_payload(payload)
    assert len(text.encode("utf-8")) == MAX_PAYLOAD_BYTES
    assert decode_payload(text) == payload


def test_payload_one_byte_over_the_limit_is_refused() -> None:
    overhead = len('{"a":""}')
    with pytest.raises(MalformedPayload, match=f"larger than {MAX_PAYLOAD_BYTES} bytes"):
        encode_payload({"a": "x" * (MAX_PAYLOAD_BYTES - overhead + 1)})


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # 600 000 characters, 1 200 000 bytes in UTF-8.
    with pytest.raises(MalformedPayload, match="larger than"):
        encode_payload({"a": "é" * 600_000})


@pytest.mark.parametrize(
    "payload", [{"a": "\ud800"}, {"a": "x\udfffy"}, {"\udc80": 1}, {"a": ["ok", "\ud83d"]}]
)
def test_encode_refuses_lone_surrogates(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload, match="not valid UTF-8"):
        encode_payload(payload)


def test_a_surrogate_pair_written_as_one_character_is_fine() -> None:
    payload = {"a": "\U0001f600"}
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize("build", [nested_dicts, nested_lists])
def test_encode_refuses_a_deeply_nested_payload_cleanly(build: Any) -> None:
    with pytest.raises(MalformedPayload, match="not JSON-serialisable"):
        encode_payload(build(100_000))


@pytest.mark.parametrize("build", [nested_dicts, nested_lists])
def test_moderate_nesting_round_trips(build: Any) -> None:
    payload = build(50)
    assert decode_payload(encode_payload(payload)) == payload


def test_decode_refuses_a_missing_payload() -> None:
    with pytest.raises(MalformedPayload, match="payload is missing"):
        decode_payload(None)


@pytest.mark.parametrize(
    "text", ["", " ", "{", "}", "not json", "{'a': 1}", '{"a":1}x', '{"a":}', '{"a" 1}', "{,}"]
)
def test_decode_refuses_invalid_json(text: str) -> None:
    with pytest.raises(MalformedPayload, match="invalid JSON") as info:
        decode_payload(text)
    assert info.value.code == "job.payload.malformed"


@pytest.mark.parametrize(
    ("text", "type_name"),
    [("[]", "list"), ("[{}]", "list"), ("1", "int"), ("1.5", "float"), ('"s"', "str"), ("null", "NoneType")],
)
def test_decode_refuses_json_that_is_not_an_object(text: str, type_name: str) -> None:
    with pytest.raises(MalformedPayload, match=f"expected a JSON object, got {type_name}$"):
        decode_payload(text)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000])
def test_decode_refuses_deep_nesting_cleanly(text: str) -> None:
    with pytest.raises(MalformedPayload):
        decode_payload(text)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


@given(payloads)
def test_payload_round_trip(payload: dict[str, Any]) -> None:
    text = encode_payload(payload)
    assert decode_payload(text) == payload
    assert encode_payload(decode_payload(text)) == text


@given(payloads)
def test_encoding_is_canonical(payload: dict[str, Any]) -> None:
    text = encode_payload(payload)
    assert encode_payload(dict(reversed(list(payload.items())))) == text
    json.loads(text, object_pairs_hook=keys_in_order)
    assert len(text.encode("utf-8")) <= MAX_PAYLOAD_BYTES


# --- dedupe keys -----------------------------------------------------------------------


def test_no_dedupe_key_is_fine() -> None:
    assert check_dedupe_key(None) is None


@pytest.mark.parametrize(
    "key", ["k", "extract:chunk-1", " padded ", "é✓", "x" * MAX_DEDUPE_KEY_CHARS, "é" * MAX_DEDUPE_KEY_CHARS]
)
def test_a_valid_dedupe_key_is_returned_unchanged(key: str) -> None:
    assert check_dedupe_key(key) == key


@pytest.mark.parametrize("key", ["", " ", "   ", "\t", "\n", " \t\r\n "])
def test_an_empty_or_blank_dedupe_key_is_refused(key: str) -> None:
    with pytest.raises(MalformedPayload, match="non-empty string or null"):
        check_dedupe_key(key)


@pytest.mark.parametrize("key", [1, b"key", ["k"]])
def test_a_non_string_dedupe_key_is_refused(key: Any) -> None:
    with pytest.raises(MalformedPayload, match="non-empty string or null"):
        check_dedupe_key(key)


def test_a_dedupe_key_one_over_the_limit_is_refused() -> None:
    assert MAX_DEDUPE_KEY_CHARS == 512
    with pytest.raises(MalformedPayload, match="longer than 512 characters"):
        check_dedupe_key("x" * (MAX_DEDUPE_KEY_CHARS + 1))


@pytest.mark.parametrize("key", ["\x00", "a\x00", "\x00b", "a\x00b"])
def test_a_dedupe_key_with_nul_is_refused(key: str) -> None:
    with pytest.raises(MalformedPayload, match="NUL character"):
        check_dedupe_key(key)


# --- NewJob ----------------------------------------------------------------------------


def test_new_job_coerces_a_wire_kind_to_the_enum() -> None:
    job = NewJob(kind="seal", payload={"tree_id": "t1", "level": 0})  # type: ignore[arg-type]
    assert job.kind is JobKind.SEAL
    assert job.payload_json == '{"level":0,"tree_id":"t1"}'
    assert job.dedupe_key is None
    assert job.available_at_ms is None
    assert job.max_attempts is None


def test_new_job_keeps_its_fields() -> None:
    job = NewJob(
        JobKind.EXTRACT_CHUNK,
        {"chunk_id": "c1"},
        dedupe_key="extract:c1",
        available_at_ms=1_767_225_600_000,
        max_attempts=3,
    )
    assert job.kind is JobKind.EXTRACT_CHUNK
    assert job.dedupe_key == "extract:c1"
    assert job.available_at_ms == 1_767_225_600_000
    assert job.max_attempts == 3
    assert job.payload_json == encode_payload({"chunk_id": "c1"})


def test_new_job_is_frozen() -> None:
    job = NewJob(JobKind.SEAL, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.kind = JobKind.FLUSH_STALE  # type: ignore[misc]
    assert job.kind is JobKind.SEAL


@pytest.mark.parametrize("kind", ["x", "", "topic_route", "SEAL"])
def test_new_job_refuses_a_bad_kind(kind: str) -> None:
    with pytest.raises(UnknownJobKind, match=f"unknown job kind {kind!r}"):
        NewJob(kind=kind, payload={})  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [{"a": math.nan}, [], "x", None, {"a": object()}, {"a": "\ud800"}])
def test_new_job_refuses_a_bad_payload(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        NewJob(JobKind.SEAL, payload)


@pytest.mark.parametrize("key", ["", " ", "a\x00", "k" * 513])
def test_new_job_refuses_a_bad_dedupe_key(key: str) -> None:
    with pytest.raises(MalformedPayload, match="dedupe_key"):
        NewJob(JobKind.SEAL, {}, dedupe_key=key)


@pytest.mark.parametrize("max_attempts", [None, 1, 2, 50, 99, 100])
def test_new_job_accepts_max_attempts_in_bounds(max_attempts: int | None) -> None:
    assert NewJob(JobKind.SEAL, {}, max_attempts=max_attempts).max_attempts == max_attempts


@pytest.mark.parametrize("max_attempts", [0, -1, 101, 1_000, -(2**63)])
def test_new_job_refuses_max_attempts_out_of_bounds(max_attempts: int) -> None:
    with pytest.raises(MalformedPayload, match="max_attempts must be a whole number between 1 and 100"):
        NewJob(JobKind.SEAL, {}, max_attempts=max_attempts)


@pytest.mark.parametrize("value", [True, False, 2.5, "3"])
def test_new_job_refuses_max_attempts_that_are_not_whole_numbers(value: object) -> None:
    with pytest.raises(MalformedPayload, match="max_attempts must be a whole number"):
        NewJob(JobKind.SEAL, {}, max_attempts=value)  # type: ignore[arg-type]


def test_new_job_payload_is_frozen_at_construction() -> None:
    payload: dict[str, object] = {"chunk_id": "c1"}
    job = NewJob(JobKind.EXTRACT_CHUNK, payload)
    payload["chunk_id"] = object()
    assert job.payload_json == '{"chunk_id":"c1"}'


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_refuses_non_finite_constants(constant: str) -> None:
    with pytest.raises(MalformedPayload, match="is not valid JSON"):
        decode_payload(f'{{"x": {constant}}}')
