"""memtasks.domain.decay: decay specs, row parsing, the state machine and failure reasons."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from memtasks.domain.decay import (
    CODE_MALFORMED,
    CODE_RUNNER_FAILURE,
    CODE_SOURCE_KIND_MISMATCH,
    CODE_SOURCE_MISSING,
    DECAY_TERMINAL,
    DECAY_TRANSITIONS,
    DecayKind,
    DecaySpec,
    DecayState,
    SummaryMethod,
    check_decay_transition,
    failure_reason,
)
from memtasks.domain.errors import IllegalTransition, ValidationError

pytestmark = pytest.mark.unit

CANDIDATE = DecayKind.CANDIDATE_COMPRESSION
EPISODE = DecayKind.EPISODE_COMPRESSION
PRINCIPLE = DecayKind.EXPIRED_PRINCIPLE_REVIEW
CONCAT = SummaryMethod.DETERMINISTIC_CONCATENATE
LLM = SummaryMethod.LLM_SUMMARY


def test_codes() -> None:
    assert CODE_MALFORMED == "decay.job.malformed"
    assert CODE_SOURCE_MISSING == "decay.compress.source_missing"
    assert CODE_SOURCE_KIND_MISMATCH == "decay.compress.source_kind_mismatch"
    assert CODE_RUNNER_FAILURE == "decay.runner.failure"


def test_wire_values() -> None:
    assert [kind.value for kind in DecayKind] == [
        "candidate_compression",
        "episode_compression",
        "expired_principle_review",
    ]
    assert [method.value for method in SummaryMethod] == ["deterministic_concatenate", "llm_summary"]


# --- valid specs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "ids", "method"),
    [
        (CANDIDATE, ("mem_1",), CONCAT),
        (CANDIDATE, ("mem_1", "mem_2", "mem_3"), CONCAT),
        (CANDIDATE, ("mem_1", "mem_2"), LLM),
        (EPISODE, ("ep_1",), CONCAT),
        (EPISODE, ("ep_1", "ep_2"), LLM),
        (PRINCIPLE, ("pr_1",), CONCAT),
        (PRINCIPLE, ("mem_1",), CONCAT),
        (PRINCIPLE, ("anything",), CONCAT),
    ],
)
def test_valid_specs(kind: DecayKind, ids: tuple[str, ...], method: SummaryMethod) -> None:
    spec = DecaySpec(kind, ids, method)
    assert spec.kind is kind
    assert spec.source_ids == ids
    assert spec.method is method
    assert spec.attestation_required is True


def test_defaults_and_coercions() -> None:
    spec = DecaySpec("candidate_compression", ["mem_1", "mem_2"], "llm_summary", False)  # type: ignore[arg-type]
    assert spec.kind is CANDIDATE
    assert spec.method is LLM
    assert spec.source_ids == ("mem_1", "mem_2")
    assert isinstance(spec.source_ids, tuple)
    assert spec.attestation_required is False
    assert DecaySpec(CANDIDATE, ("mem_1",)).method is CONCAT


def test_spec_is_frozen() -> None:
    spec = DecaySpec(CANDIDATE, ("mem_1",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = EPISODE  # type: ignore[misc]


# --- invalid specs ---------------------------------------------------------------------


def expect_code(code: str, *args: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        DecaySpec(*args)
    assert info.value.code == code
    return info.value


@pytest.mark.parametrize("kind", list(DecayKind))
@pytest.mark.parametrize("ids", [(), []])
def test_no_sources_is_source_missing(kind: DecayKind, ids: Any) -> None:
    error = expect_code(CODE_SOURCE_MISSING, kind, ids)
    assert "at least one source id" in str(error)


@pytest.mark.parametrize(
    ("kind", "ids", "prefix"),
    [
        (CANDIDATE, ("ep_1",), "mem_"),
        (CANDIDATE, ("mem_1", "ep_2"), "mem_"),
        (CANDIDATE, ("ep_1", "mem_2"), "mem_"),
        (CANDIDATE, ("mem1",), "mem_"),
        (CANDIDATE, ("MEM_1",), "mem_"),
        (CANDIDATE, ("pr_1",), "mem_"),
        (EPISODE, ("mem_1",), "ep_"),
        (EPISODE, ("ep_1", "mem_2"), "ep_"),
        (EPISODE, ("ep1",), "ep_"),
    ],
)
def test_mixed_id_kinds_are_a_mismatch(kind: DecayKind, ids: tuple[str, ...], prefix: str) -> None:
    error = expect_code(CODE_SOURCE_KIND_MISMATCH, kind, ids)
    assert str(error) == f"{kind.value} takes only {prefix}… ids"


@pytest.mark.parametrize("ids", [("mem_1", ""), ("",), ("mem_1", None), (1,), (b"mem_1",)])
def test_non_string_or_empty_ids_are_malformed(ids: tuple[Any, ...]) -> None:
    expect_code(CODE_MALFORMED, CANDIDATE, ids)


@pytest.mark.parametrize("ids", [("pr_1", "pr_2"), ("pr_1", "pr_1"), ("a", "b", "c")])
def test_principle_review_takes_exactly_one_id(ids: tuple[str, ...]) -> None:
    error = expect_code(CODE_MALFORMED, PRINCIPLE, ids)
    assert "exactly one principle id" in str(error)


def test_principle_review_with_no_id_is_source_missing() -> None:
    expect_code(CODE_SOURCE_MISSING, PRINCIPLE, ())


def test_principle_review_has_no_llm_summary() -> None:
    error = expect_code(CODE_MALFORMED, PRINCIPLE, ("pr_1",), LLM)
    assert "no summary method" in str(error)


def test_principle_review_with_two_ids_and_llm_summary_is_malformed() -> None:
    expect_code(CODE_MALFORMED, PRINCIPLE, ("pr_1", "pr_2"), LLM)


@pytest.mark.parametrize(
    ("kind", "method"),
    [("nope", CONCAT), ("", CONCAT), ("CANDIDATE_COMPRESSION", CONCAT), (CANDIDATE, "nope"), (CANDIDATE, "")],
)
def test_unknown_kind_or_method_in_the_constructor_is_malformed(kind: Any, method: Any) -> None:
    expect_code(CODE_MALFORMED, kind, ("mem_1",), method)


@pytest.mark.parametrize(("method", "needs_operator"), [(CONCAT, False), (LLM, True), ("llm_summary", True)])
def test_needs_operator_for_llm_summary(method: Any, needs_operator: bool) -> None:
    assert DecaySpec(CANDIDATE, ("mem_1",), method).needs_operator is needs_operator


# --- rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        DecaySpec(CANDIDATE, ("mem_1", "mem_2")),
        DecaySpec(EPISODE, ("ep_1",), LLM, False),
        DecaySpec(PRINCIPLE, ("pr_1",)),
        DecaySpec(CANDIDATE, ("mem_é✓",)),
    ],
)
def test_row_round_trip(spec: DecaySpec) -> None:
    again = DecaySpec.from_row(
        spec.kind.value, spec.source_ids_json(), spec.method.value, spec.attestation_required
    )
    assert again == spec


def test_source_ids_json() -> None:
    assert DecaySpec(CANDIDATE, ("mem_1", "mem_2")).source_ids_json() == '["mem_1", "mem_2"]'


@pytest.mark.parametrize("text", ["", "not json", "[", '["mem_1"', "['mem_1']", None, b"\xff"])
def test_from_row_with_bad_json_is_malformed(text: Any) -> None:
    with pytest.raises(ValidationError, match="source ids are not JSON") as info:
        DecaySpec.from_row("candidate_compression", text, "deterministic_concatenate", True)
    assert info.value.code == CODE_MALFORMED


@pytest.mark.parametrize("text", ['{"a": 1}', '"mem_1"', "1", "null", "true"])
def test_from_row_with_a_non_list_is_malformed(text: str) -> None:
    with pytest.raises(ValidationError, match="not a JSON list") as info:
        DecaySpec.from_row("candidate_compression", text, "deterministic_concatenate", True)
    assert info.value.code == CODE_MALFORMED


@pytest.mark.parametrize("text", ["[1]", '["mem_1", 2]', "[null]", '[["mem_1"]]', '[{"id": "mem_1"}]'])
def test_from_row_with_non_string_ids_is_malformed(text: str) -> None:
    with pytest.raises(ValidationError, match="must be strings") as info:
        DecaySpec.from_row("candidate_compression", text, "deterministic_concatenate", True)
    assert info.value.code == CODE_MALFORMED


@pytest.mark.parametrize("kind", ["x", "", "topic_route", "Candidate_Compression"])
def test_from_row_with_an_unknown_kind_is_malformed(kind: str) -> None:
    with pytest.raises(ValidationError, match=f"unknown decay kind {kind!r}") as info:
        DecaySpec.from_row(kind, '["mem_1"]', "deterministic_concatenate", True)
    assert info.value.code == CODE_MALFORMED


@pytest.mark.parametrize("method", ["x", "", "llm", "LLM_SUMMARY"])
def test_from_row_with_an_unknown_method_is_malformed(method: str) -> None:
    with pytest.raises(ValidationError, match=f"unknown summary method {method!r}") as info:
        DecaySpec.from_row("candidate_compression", '["mem_1"]', method, True)
    assert info.value.code == CODE_MALFORMED


def test_from_row_with_an_empty_list_is_source_missing() -> None:
    with pytest.raises(ValidationError) as info:
        DecaySpec.from_row("candidate_compression", "[]", "deterministic_concatenate", True)
    assert info.value.code == CODE_SOURCE_MISSING


def test_from_row_applies_the_spec_rules() -> None:
    with pytest.raises(ValidationError) as info:
        DecaySpec.from_row("candidate_compression", '["ep_1"]', "deterministic_concatenate", True)
    assert info.value.code == CODE_SOURCE_KIND_MISMATCH


def test_from_row_with_deeply_nested_json_is_malformed() -> None:
    with pytest.raises(ValidationError) as info:
        DecaySpec.from_row("candidate_compression", "[" * 100_000, "deterministic_concatenate", True)
    assert info.value.code == CODE_MALFORMED


# --- the state machine -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (DecayState.PENDING, False),
        (DecayState.IN_PROGRESS, False),
        (DecayState.COMPLETED, True),
        (DecayState.FAILED, True),
        (DecayState.CANCELLED, True),
    ],
)
def test_terminal_states(state: DecayState, terminal: bool) -> None:
    assert state.terminal is terminal
    assert (state in DECAY_TERMINAL) is terminal


EXPECTED_DECAY_TRANSITIONS = {
    (DecayState.PENDING, DecayState.IN_PROGRESS),
    (DecayState.PENDING, DecayState.CANCELLED),
    (DecayState.IN_PROGRESS, DecayState.COMPLETED),
    (DecayState.IN_PROGRESS, DecayState.FAILED),
    (DecayState.IN_PROGRESS, DecayState.PENDING),
    # an operator's requeue or the self-heal sweep, as for every job (memtasks.domain.lifecycle)
    (DecayState.FAILED, DecayState.PENDING),
}


def test_the_transition_table_is_the_documented_one() -> None:
    assert set(DECAY_TRANSITIONS) == set(DecayState)
    table = {(current, target) for current, targets in DECAY_TRANSITIONS.items() for target in targets}
    assert table == EXPECTED_DECAY_TRANSITIONS
    assert not DECAY_TRANSITIONS[DecayState.COMPLETED] and not DECAY_TRANSITIONS[DecayState.CANCELLED]
    assert DECAY_TRANSITIONS[DecayState.FAILED] == {DecayState.PENDING}, "terminal until requeued"
    assert all(state.terminal for state in DECAY_TERMINAL)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(DecayState, DecayState)))
def test_check_decay_transition_follows_the_table(current: DecayState, target: DecayState) -> None:
    if target in DECAY_TRANSITIONS[current]:
        assert (current, target) in EXPECTED_DECAY_TRANSITIONS
        check_decay_transition(current, target)  # allowed: no exception
    else:
        assert (current, target) not in EXPECTED_DECAY_TRANSITIONS
        with pytest.raises(IllegalTransition) as info:
            check_decay_transition(current, target)
        assert str(info.value) == f"decay state {current.value} → {target.value} is not allowed"


# --- failure reasons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("decay.x", "it broke", "decay.x"),
        ("decay.x", None, "decay.x"),
        ("decay.x", "", "decay.x"),
        (None, "it broke", "it broke"),
        ("", "it broke", "it broke"),
        ("   ", "it broke", "it broke"),
        ("\t\n", "it broke", "it broke"),
        (None, None, "decay.runner.failure"),
        ("", "", "decay.runner.failure"),
        (None, "", "decay.runner.failure"),
        ("", None, "decay.runner.failure"),
        (" ", " \t ", "decay.runner.failure"),
        ("\n", None, "decay.runner.failure"),
    ],
)
def test_failure_reason(code: str | None, message: str | None, reason: str) -> None:
    assert failure_reason(code, message) == reason
