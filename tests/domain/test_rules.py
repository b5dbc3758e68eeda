"""Pure domain rules: kinds, transitions, backoff, dedupe keys, payloads, decay specs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.backoff import RetryPolicy, backoff_ms, decide_failure, with_jitter
from memtasks.domain.clock import HOUR_MS, from_datetime, to_datetime
from memtasks.domain.decay import (
    DECAY_TRANSITIONS,
    DecayKind,
    DecaySpec,
    DecayState,
    SummaryMethod,
    check_decay_transition,
    failure_reason,
)
from memtasks.domain.dedupe import (
    append_source_key,
    append_topic_key,
    extract_key,
    flush_stale_key,
    reembed_backfill_key,
    seal_document_key,
    seal_key,
)
from memtasks.domain.errors import IllegalTransition, MalformedPayload, UnknownJobKind, ValidationError
from memtasks.domain.jobs import (
    ALLOWED_TRANSITIONS,
    FailureClass,
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


@pytest.mark.parametrize(
    ("kind", "priority", "llm"),
    [
        ("seal", 1, True),
        ("flush_stale", 2, False),
        ("append_buffer", 3, False),
        ("extract_chunk", 4, True),
        ("reembed_backfill", 4, True),
        ("seal_document", 4, True),
    ],
)
def test_kind_priority_and_llm_binding(kind: str, priority: int, llm: bool) -> None:
    parsed = JobKind.parse(kind)
    assert parsed.priority == priority
    assert parsed.llm_bound is llm


@pytest.mark.parametrize("kind", ["topic_route", "digest_daily", "", "SEAL", "seal "])
def test_unknown_or_retired_kinds_are_refused_by_name(kind: str) -> None:
    with pytest.raises(UnknownJobKind, match=f"unknown job kind {kind!r}"):
        JobKind.parse(kind)


def test_retired_kinds() -> None:
    assert is_retired_kind("topic_route") and is_retired_kind("digest_daily")
    assert not is_retired_kind("seal")


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_job_transitions(current: JobStatus, target: JobStatus) -> None:
    if target in ALLOWED_TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition, match=f"{current.value} → {target.value}"):
            check_transition(current, target)


def test_terminal_statuses_go_nowhere_but_requeue() -> None:
    assert ALLOWED_TRANSITIONS[JobStatus.DONE] == frozenset()
    assert ALLOWED_TRANSITIONS[JobStatus.CANCELLED] == frozenset()
    assert ALLOWED_TRANSITIONS[JobStatus.FAILED] == frozenset({JobStatus.READY})
    assert {s for s in JobStatus if s.active} == {JobStatus.READY, JobStatus.RUNNING}


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(0, 60), (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3600), (8, 3600), (500, 3600)],
)
def test_backoff_doubles_from_a_minute_and_caps_at_an_hour(attempts: int, seconds: int) -> None:
    assert backoff_ms(attempts) == seconds * 1000


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_is_monotonic_and_bounded(attempts: int) -> None:
    assert backoff_ms(attempts) <= backoff_ms(attempts + 1) <= HOUR_MS


@given(st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=0.999999))
def test_jitter_adds_at_most_its_fraction(delay: int, draw: float) -> None:
    jittered = with_jitter(delay, 0.1, lambda: draw)
    assert delay <= jittered <= delay * 1.1


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0, 10, 0), (10, 5, 0), (10, 20, -0.1), (10, 20, 1.5)])
def test_retry_policy_refuses_nonsense(base: int, cap: int, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"backoff|jitter"):
        RetryPolicy(base_ms=base, cap_ms=cap, jitter=jitter)


@pytest.mark.parametrize(
    ("attempts", "max_attempts", "cls", "terminal"),
    [
        (1, 5, FailureClass.TRANSIENT, False),
        (4, 5, FailureClass.TRANSIENT, False),
        (5, 5, FailureClass.TRANSIENT, True),
        (1, 5, FailureClass.UNRECOVERABLE, True),
    ],
)
def test_failure_decision(attempts: int, max_attempts: int, cls: FailureClass, terminal: bool) -> None:
    decision = decide_failure(
        attempts=attempts,
        max_attempts=max_attempts,
        failure_class=cls,
        policy=RetryPolicy(jitter=0),
        random=lambda: 0.5,
    )
    assert decision.terminal is terminal
    assert decision.retry_in_ms == (None if terminal else backoff_ms(attempts))


@pytest.mark.parametrize(
    ("moment", "key"),
    [
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "flush_stale:2026-01-01-h0"),
        (datetime(2026, 1, 1, 2, 59, 59, tzinfo=UTC), "flush_stale:2026-01-01-h0"),
        (datetime(2026, 1, 1, 3, 0, tzinfo=UTC), "flush_stale:2026-01-01-h1"),
        (datetime(2026, 1, 1, 23, 59, tzinfo=UTC), "flush_stale:2026-01-01-h7"),
        (datetime(2026, 1, 2, 0, 0, tzinfo=UTC), "flush_stale:2026-01-02-h0"),
    ],
)
def test_flush_stale_key_is_a_three_hour_utc_block(moment: datetime, key: str) -> None:
    assert flush_stale_key(from_datetime(moment)) == key


def test_dedupe_key_builders() -> None:
    assert extract_key("c1") == "extract:c1"
    assert append_source_key("s1", "n1") == "append:source:s1:n1"
    assert append_topic_key("t1", "n1") == "append:topic:t1:n1"
    assert seal_key("t1", 2) == "seal:t1:2"
    assert reembed_backfill_key("sig") == "reembed_backfill:sig"
    assert seal_document_key("d1") == "seal_doc:d1"
    assert seal_document_key("d1", 7) == "seal_doc:d1@7"


@pytest.mark.parametrize("key", ["", "   ", "x" * 513, "a\x00b"])
def test_bad_dedupe_keys_are_refused(key: str) -> None:
    with pytest.raises(MalformedPayload):
        check_dedupe_key(key)


def test_dedupe_key_may_carry_sql_metacharacters() -> None:
    key = "seal:'; DROP TABLE mem_tree_jobs; --:1"
    assert check_dedupe_key(key) == key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_payload_round_trips(payload: dict[str, object]) -> None:
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"x": float("nan")}, "not JSON-serialisable"),
        ({"x": {1, 2}}, "not JSON-serialisable"),
        ({"x": "\ud800"}, "not valid UTF-8"),
        ({"x": "y" * 1_000_001}, "larger than"),
    ],
)
def test_bad_payloads_are_refused(payload: dict[str, object], fragment: str) -> None:
    with pytest.raises(MalformedPayload, match=fragment):
        encode_payload(payload)


def test_deeply_nested_payload_is_refused_cleanly() -> None:
    nested: dict[str, object] = {}
    node = nested
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    with pytest.raises(MalformedPayload):
        encode_payload(nested)
    with pytest.raises(MalformedPayload):
        decode_payload("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("text", [None, "", "{", "[]", "1", '"s"'])
def test_stored_payload_must_be_an_object(text: str | None) -> None:
    with pytest.raises(MalformedPayload):
        decode_payload(text)


def test_new_job_validates_max_attempts() -> None:
    with pytest.raises(MalformedPayload, match="max_attempts"):
        NewJob(JobKind.SEAL, {}, max_attempts=0)
    assert NewJob("seal", {}).kind is JobKind.SEAL  # type: ignore[arg-type]


@pytest.mark.parametrize("current", list(DecayState))
@pytest.mark.parametrize("target", list(DecayState))
def test_decay_transitions(current: DecayState, target: DecayState) -> None:
    if target in DECAY_TRANSITIONS[current]:
        check_decay_transition(current, target)
    else:
        with pytest.raises(IllegalTransition):
            check_decay_transition(current, target)


@pytest.mark.parametrize(
    ("kind", "ids", "method", "code"),
    [
        (
            DecayKind.CANDIDATE_COMPRESSION,
            (),
            SummaryMethod.DETERMINISTIC_CONCATENATE,
            "decay.compress.source_missing",
        ),
        (
            DecayKind.CANDIDATE_COMPRESSION,
            ("mem_a", "ep_b"),
            SummaryMethod.DETERMINISTIC_CONCATENATE,
            "decay.compress.source_kind_mismatch",
        ),
        (
            DecayKind.EPISODE_COMPRESSION,
            ("mem_a",),
            SummaryMethod.LLM_SUMMARY,
            "decay.compress.source_kind_mismatch",
        ),
        (
            DecayKind.EXPIRED_PRINCIPLE_REVIEW,
            ("p1", "p2"),
            SummaryMethod.DETERMINISTIC_CONCATENATE,
            "decay.job.malformed",
        ),
        (DecayKind.EXPIRED_PRINCIPLE_REVIEW, ("p1",), SummaryMethod.LLM_SUMMARY, "decay.job.malformed"),
    ],
)
def test_decay_spec_validation(
    kind: DecayKind, ids: tuple[str, ...], method: SummaryMethod, code: str
) -> None:
    with pytest.raises(ValidationError) as info:
        DecaySpec(kind, ids, method)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("kind", "ids_json", "method"),
    [
        ("candidate_compression", "{oops", "deterministic_concatenate"),
        ("candidate_compression", '{"a": 1}', "deterministic_concatenate"),
        ("candidate_compression", "[1, 2]", "deterministic_concatenate"),
        ("mystery", '["mem_a"]', "deterministic_concatenate"),
        ("candidate_compression", '["mem_a"]', "telepathy"),
    ],
)
def test_decay_rows_that_do_not_parse_are_malformed(kind: str, ids_json: str, method: str) -> None:
    with pytest.raises(ValidationError) as info:
        DecaySpec.from_row(kind, ids_json, method, True)
    assert info.value.code == "decay.job.malformed"


def test_llm_summary_needs_an_operator() -> None:
    assert DecaySpec(DecayKind.EPISODE_COMPRESSION, ("ep_a",), SummaryMethod.LLM_SUMMARY).needs_operator
    assert not DecaySpec(DecayKind.EPISODE_COMPRESSION, ("ep_a",)).needs_operator


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("decay.x", "boom", "decay.x"),
        (None, "boom", "boom"),
        ("  ", "boom", "boom"),
        (None, " ", "decay.runner.failure"),
        (None, None, "decay.runner.failure"),
    ],
)
def test_failure_reason_is_never_empty(code: str | None, message: str | None, reason: str) -> None:
    assert failure_reason(code, message) == reason


def test_clock_round_trip_and_naive_refusal() -> None:
    moment = datetime(2026, 5, 13, 12, 0, 0, 123000, tzinfo=UTC)
    assert to_datetime(from_datetime(moment)) == moment
    with pytest.raises(ValueError, match="naive"):
        from_datetime(datetime(2026, 5, 13))
