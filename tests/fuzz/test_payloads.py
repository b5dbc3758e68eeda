"""Fuzzed job payloads, kinds, dedupe keys, decay specs, retrieval-failure records and
message arguments: a clear validation error naming the field, or a value that round-trips.

Never a TypeError, KeyError, AttributeError, RecursionError or driver error escaping.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.clock import MAX_TIMESTAMP_MS
from memtasks.domain.decay import CODE_MALFORMED, CODE_SOURCE_KIND_MISMATCH, CODE_SOURCE_MISSING, DecaySpec
from memtasks.domain.errors import MalformedPayload, UnknownJobKind, ValidationError
from memtasks.domain.jobs import (
    MAX_DEDUPE_KEY_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    JobKind,
    NewJob,
    check_dedupe_key,
    decode_payload,
    encode_payload,
)
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.domain.text import unstorable
from memtasks.domain.tree import MAX_ID_CHARS, MAX_LEVEL, MAX_SOURCE_CHARS, PAYLOAD_TYPES, validate_payload
from memtasks.domain.wire import (
    MAX_DELAY_S,
    MAX_DRAIN_LIMIT,
    MAX_INTERVAL_S,
    check_delay_s,
    check_interval_s,
    check_source_ids,
    drain_limit,
    lookup_id,
    parse_kinds,
)
from tests.fuzz.budget import attempt, fuzz
from tests.fuzz.strategies import (
    anything,
    deep,
    ident,
    json_values,
    non_json,
    storable_char,
    surrogate,
    unknown_kind,
    unstorable_text,
    wire_kinds,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

# ── the payload of each kind: its fields and what a valid value is ───────────

TEXT, LEVEL, FLAG, POSITIVE = "text", "level", "flag", "positive"
FIELDS: dict[JobKind, dict[str, tuple[str, bool, int]]] = {
    # field → (type, required, text limit)
    JobKind.EXTRACT_CHUNK: {"chunk_id": (TEXT, True, MAX_ID_CHARS)},
    JobKind.APPEND_BUFFER: {
        "tree_id": (TEXT, True, MAX_ID_CHARS),
        "level": (LEVEL, True, 0),
        "item_id": (TEXT, True, MAX_ID_CHARS),
    },
    JobKind.SEAL: {
        "tree_id": (TEXT, True, MAX_ID_CHARS),
        "level": (LEVEL, True, 0),
        "force": (FLAG, False, 0),
    },
    JobKind.FLUSH_STALE: {"older_than_ms": (POSITIVE, False, 0)},
    JobKind.REEMBED_BACKFILL: {"model": (TEXT, False, MAX_SOURCE_CHARS), "batch": (POSITIVE, False, 0)},
    JobKind.SEAL_DOCUMENT: {
        "tree_id": (TEXT, True, MAX_ID_CHARS),
        "doc_id": (TEXT, True, MAX_SOURCE_CHARS),
        "version": (TEXT, False, MAX_ID_CHARS),
    },
}


def valid_value(kind: str, limit: int) -> st.SearchStrategy[Any]:
    return {
        TEXT: ident(limit),
        LEVEL: st.integers(0, MAX_LEVEL),
        FLAG: st.booleans(),
        POSITIVE: st.integers(1, 2**62),
    }[kind]


def invalid_value(kind: str, limit: int, required: bool) -> st.SearchStrategy[Any]:
    """Values the field refuses (None only where the field is required)."""
    wrong_type = st.one_of(
        st.integers(), st.floats(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(), st.text())
    )
    missing = st.just(None) if required else st.nothing()
    if kind == TEXT:
        return st.one_of(
            missing,
            wrong_type,
            st.booleans(),
            st.binary(max_size=4),
            st.text(" \t\n", max_size=3),
            st.text(storable_char, min_size=limit + 1, max_size=limit + 40).filter(str.strip),
            unstorable_text(limit).filter(str.strip),
        )
    if kind == LEVEL:
        return st.one_of(
            missing,
            st.booleans(),
            st.integers(max_value=-1),
            st.integers(min_value=MAX_LEVEL + 1),
            st.floats(),
            st.text(max_size=3),
            st.lists(st.integers(0, 3), max_size=2),
        )
    if kind == FLAG:
        return st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.lists(st.booleans(), max_size=1))
    return st.one_of(  # POSITIVE
        st.booleans(),
        st.integers(max_value=0),
        st.floats(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=1),
    )


@st.composite
def valid_payloads(draw: st.DrawFn) -> tuple[JobKind, dict[str, Any]]:
    kind = draw(st.sampled_from(list(JobKind)))
    payload: dict[str, Any] = {}
    for field, (ftype, required, limit) in FIELDS[kind].items():
        if required or draw(st.booleans()):
            payload[field] = draw(valid_value(ftype, limit))
    extras = draw(st.dictionaries(st.text(storable_char, max_size=10), json_values, max_size=3))
    return kind, {**extras, **payload}


@st.composite
def payloads_with_one_bad_field(draw: st.DrawFn) -> tuple[JobKind, dict[str, Any], str]:
    kind, payload = draw(valid_payloads().filter(lambda kp: bool(FIELDS[kp[0]])))
    field = draw(st.sampled_from(sorted(FIELDS[kind])))
    ftype, required, limit = FIELDS[kind][field]
    bad = draw(invalid_value(ftype, limit, required))
    if bad is None:
        payload.pop(field, None)
    else:
        payload[field] = bad
    return kind, payload, field


# ── payloads ─────────────────────────────────────────────────────────────────


@fuzz(1200)
@given(valid_payloads())
def test_valid_payloads_are_accepted_and_round_trip(kind_payload: tuple[JobKind, dict[str, Any]]) -> None:
    kind, payload = kind_payload
    validate_payload(kind, payload)
    parsed = PAYLOAD_TYPES[kind].parse(payload)
    for field in FIELDS[kind]:
        expected = payload.get(field, False if field == "force" else None)
        assert getattr(parsed, field) == expected
    job = NewJob(kind.value, payload)  # type: ignore[arg-type]
    assert job.kind is kind
    assert decode_payload(job.payload_json) == payload
    assert json.loads(job.payload_json) == payload


@fuzz(1500)
@given(payloads_with_one_bad_field())
def test_a_bad_field_is_refused_naming_the_field(case: tuple[JobKind, dict[str, Any], str]) -> None:
    kind, payload, field = case
    with pytest.raises(MalformedPayload) as info:
        validate_payload(kind, payload)
    assert repr(field) in str(info.value)
    assert info.value.code == "job.payload.malformed"


@fuzz(1500)
@given(st.one_of(wire_kinds, unknown_kind(), anything), anything)
def test_anything_as_kind_and_payload_is_accepted_or_a_validation_error(kind: Any, payload: Any) -> None:
    """Whatever arrives, the outcome is a job that round-trips or a ValidationError."""

    def make() -> NewJob:
        validate_payload(kind, payload)
        return NewJob(kind, payload)

    job = attempt(make, ValidationError)
    if isinstance(job, ValidationError):
        assert job.code in {"job.kind.unknown", "job.payload.malformed"}
        assert str(job)
        return
    assert isinstance(kind, str) and kind in {k.value for k in JobKind}
    assert isinstance(payload, Mapping)
    assert decode_payload(job.payload_json) == json.loads(json.dumps(payload))


@fuzz(600)
@given(unknown_kind(), st.one_of(st.just({}), json_values))
def test_an_unknown_kind_is_named(kind: str, payload: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: JobKind.parse(kind),
        lambda: validate_payload(kind, payload),
        lambda: NewJob(kind, {}),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(UnknownJobKind) as info:
            call()
        assert info.value.kind == kind
        assert repr(kind[:80])[:-1] in str(info.value)
        # a megabyte kind is not copied into the message
        assert len(str(info.value)) <= len("unknown job kind …") + len(repr(kind[:80]))


@fuzz(300)
@given(
    st.integers(1, 3 * MAX_PAYLOAD_DEPTH),
    st.lists(st.sampled_from(["dict", "list"]), min_size=1, max_size=5),
    st.one_of(st.just(0), st.text(storable_char, max_size=5)),
)
def test_nesting_is_accepted_up_to_the_limit_and_named_beyond(
    depth: int, shape: list[str], leaf: Any
) -> None:
    payload = {"a": deep(depth - 1, leaf, shape)}  # the top object is level 1
    if depth <= MAX_PAYLOAD_DEPTH:
        assert decode_payload(encode_payload(payload)) == payload
    else:
        with pytest.raises(MalformedPayload, match=f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"):
            encode_payload(payload)


@fuzz(40)
@given(st.integers(10_000, 50_000), st.lists(st.sampled_from(["dict", "list"]), min_size=1, max_size=3))
def test_very_deep_nesting_is_a_clear_error_not_a_recursion_error(depth: int, shape: list[str]) -> None:
    payload = {"a": deep(depth, 0, shape)}
    for call in (
        lambda: encode_payload(payload),
        lambda: NewJob(JobKind.SEAL, {"tree_id": "t", "level": 0, **payload}),
    ):
        with pytest.raises(MalformedPayload, match="nested deeper than"):
            call()
    text = "[" * depth + "]" * depth
    with pytest.raises(MalformedPayload, match="invalid JSON"):
        decode_payload('{"a":' + text + "}")


@fuzz(20)
@given(st.integers(MAX_PAYLOAD_BYTES - 64, 4_000_000), st.sampled_from(["text", "many", "wide"]))
def test_huge_payloads_are_refused_by_size(size: int, shape: str) -> None:
    if shape == "text":
        payload: dict[str, Any] = {"a": "x" * size}
    elif shape == "many":
        payload = {"a": [0] * (size // 2)}
    else:
        payload = {f"k{i}": 1 for i in range(size // 16)}
    encoded_size = len(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    if encoded_size <= MAX_PAYLOAD_BYTES:
        assert decode_payload(encode_payload(payload)) == payload
    else:
        with pytest.raises(MalformedPayload, match=f"larger than {MAX_PAYLOAD_BYTES} bytes"):
            encode_payload(payload)


@fuzz(600)
@given(json_values, st.text(surrogate, min_size=1, max_size=2), st.integers(0, 3), st.booleans())
def test_a_lone_surrogate_anywhere_is_named_not_valid_utf8(
    base: Any, bad: str, depth: int, as_key: bool
) -> None:
    poisoned: Any = {bad: 1} if as_key else bad
    payload = {"x": base, "nested": deep(depth, poisoned, ["list", "dict"])}
    with pytest.raises(MalformedPayload, match=r"not valid UTF-8") as info:
        encode_payload(payload)
    assert "payload[" in str(info.value)


@fuzz(400)
@given(json_values, non_json, st.integers(0, 3))
def test_values_json_cannot_hold_are_named(base: Any, bad: Any, depth: int) -> None:
    payload = {"x": base, "y": deep(depth, bad, ["dict", "list"])}
    with pytest.raises(MalformedPayload) as info:
        encode_payload(payload)
    assert "payload['y']" in str(info.value)


@fuzz(600)
@given(json_values, st.text(storable_char, max_size=20))
def test_nul_in_free_payload_values_round_trips_escaped(base: Any, text: str) -> None:
    """A NUL inside free-form payload text is stored escaped (``\\u0000``), never raw."""
    payload = {"x": base, "note": f"{text}\x00{text}"}
    encoded = encode_payload(payload)
    assert "\x00" not in encoded
    assert decode_payload(encoded) == payload


@fuzz(600)
@given(
    st.one_of(
        st.text(max_size=50),
        st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
        json_values.map(json.dumps),
    )
)
def test_stored_payload_text_decodes_or_is_malformed(text: str) -> None:
    value = attempt(lambda: decode_payload(text), MalformedPayload)
    if isinstance(value, MalformedPayload):
        assert str(value).startswith("malformed job payload:")
    else:
        assert isinstance(value, dict)
        assert decode_payload(encode_payload(value)) == value


# ── dedupe keys ──────────────────────────────────────────────────────────────


@fuzz(800)
@given(
    st.one_of(
        st.none(),
        ident(MAX_DEDUPE_KEY_CHARS),
        unstorable_text(),
        anything,
        st.text(min_size=500, max_size=600),
    )
)
def test_dedupe_keys_are_kept_exactly_or_refused_naming_dedupe_key(key: Any) -> None:
    kept = attempt(lambda: check_dedupe_key(key), MalformedPayload)
    if isinstance(kept, MalformedPayload):
        assert "dedupe_key" in str(kept)
        assert key is not None
        assert (
            not isinstance(key, str)
            or not key.strip()
            or len(key) > MAX_DEDUPE_KEY_CHARS
            or unstorable(key) is not None
        )
        return
    assert kept == key
    assert key is None or (isinstance(key, str) and unstorable(key) is None)


# ── message arguments ────────────────────────────────────────────────────────

numbers = st.one_of(st.integers(), st.floats(), st.booleans())


@fuzz(400)
@given(st.one_of(numbers, anything, st.integers(-(10**30), 10**30)))
def test_delays_are_finite_seconds_in_range_or_named(value: Any) -> None:
    checks: list[tuple[Callable[[Any], Any], str, float]] = [
        (check_delay_s, "delay_s", MAX_DELAY_S),
        (check_interval_s, "interval_s", MAX_INTERVAL_S),
    ]
    for check, name, upper in checks:
        seconds = attempt(lambda: check(value), ValidationError)  # noqa: B023 (called at once)
        if isinstance(seconds, ValidationError):
            assert str(seconds).startswith(name)
            continue
        if seconds is None:
            assert value is None and name == "delay_s"
            continue
        assert not isinstance(value, bool)
        assert math.isfinite(seconds) and 0 <= seconds <= upper
        assert seconds == value
        if name == "interval_s":
            assert seconds > 0


@fuzz(400)
@given(st.one_of(st.lists(st.one_of(wire_kinds, unknown_kind()), max_size=4), anything))
def test_drain_kinds_are_a_list_of_kinds_or_named(value: Any) -> None:
    kinds = attempt(lambda: parse_kinds(value), ValidationError)
    if isinstance(kinds, UnknownJobKind):
        assert kinds.kind in value
    elif isinstance(kinds, ValidationError):
        assert str(kinds).startswith("kinds ")
    else:
        assert kinds and [k.value for k in kinds] == list(value)


@fuzz(300)
@given(st.one_of(numbers, anything))
def test_drain_limits_are_clamped_numbers_or_named(value: Any) -> None:
    limit = attempt(lambda: drain_limit(value), ValidationError)
    if isinstance(limit, ValidationError):
        assert str(limit).startswith("limit ")
        assert isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    else:
        assert 1 <= limit <= MAX_DRAIN_LIMIT


@fuzz(300)
@given(st.one_of(ident(), unstorable_text(), anything))
def test_lookup_ids_are_storable_strings(value: Any) -> None:
    found = lookup_id(value)
    if found is None:
        assert not isinstance(value, str) or not value or unstorable(value) is not None
    else:
        assert found == value and unstorable(found) is None


# ── decay specs and retrieval-failure records ────────────────────────────────

DECAY_CODES = {CODE_MALFORMED, CODE_SOURCE_MISSING, CODE_SOURCE_KIND_MISMATCH, "message.argument.invalid"}


@fuzz(800)
@given(
    st.one_of(
        st.sampled_from(["candidate_compression", "episode_compression", "expired_principle_review"]),
        anything,
    ),
    st.one_of(
        st.lists(
            st.one_of(ident().map(lambda s: "mem_" + s[:60]), ident().map(lambda s: "ep_" + s[:60])),
            max_size=3,
        ),
        st.lists(st.one_of(ident(100), unstorable_text(), anything), max_size=3),
        anything,
    ),
    st.one_of(st.sampled_from(["deterministic_concatenate", "llm_summary"]), anything),
)
def test_decay_specs_are_valid_or_a_coded_validation_error(kind: Any, source_ids: Any, method: Any) -> None:
    spec = attempt(lambda: DecaySpec(kind, check_source_ids(source_ids), method), ValidationError)
    if isinstance(spec, ValidationError):
        assert spec.code in DECAY_CODES, spec
        return
    assert list(spec.source_ids) == list(source_ids)
    assert all(isinstance(i, str) and unstorable(i) is None and len(i) <= 64 for i in spec.source_ids)
    again = DecaySpec.from_row(spec.kind.value, spec.source_ids_json(), spec.method.value, True)
    assert again.source_ids == spec.source_ids


VALID_RECORD: dict[str, Any] = {
    "failure_type": "no_hit",
    "retrieval_strategy": "semantic",
    "query_text": "where did I put it",
    "query_len": 18,
}
RECORD_FIELDS = [
    "failure_type",
    "retrieval_strategy",
    "query_text",
    "query_len",
    "conversation_id",
    "turn_index",
    "top_score",
    "confidence_threshold",
    "result_count",
    "latency_ms",
    "edge_types",
    "error_context",
    "created_at_ms",
]


@fuzz(800)
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(RECORD_FIELDS), st.text(max_size=8)),
        st.one_of(json_values, st.integers(-(10**400), 10**400), unstorable_text()),
        max_size=4,
    ),
    st.sets(st.sampled_from(list(VALID_RECORD)), max_size=1),
)
def test_retrieval_failure_records_from_the_wire_are_valid_or_named(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    wire = {k: v for k, v in {**VALID_RECORD, **changes}.items() if k not in dropped}
    record = attempt(lambda: RetrievalFailure.from_wire(wire), ValidationError)
    if isinstance(record, ValidationError):
        assert record.code in {"retrieval.record.invalid", "retrieval.failure_type.unknown"}
        assert str(record)
        return
    assert set(wire) <= set(RECORD_FIELDS)
    for text in (record.retrieval_strategy, record.query_text, record.conversation_id, record.error_context):
        assert text is None or unstorable(text) is None
    assert record.created_at_ms is None or 0 <= record.created_at_ms <= MAX_TIMESTAMP_MS
    for score in (record.top_score, record.confidence_threshold):
        assert score is None or math.isfinite(score)
    assert RetrievalFailure.from_wire(record.to_wire()) == record
