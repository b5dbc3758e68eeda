"""Consolidation gates as pure functions: the time gate's edge cases, the session gate, the fact."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.clock import DAY_MS, HOUR_MS, SECOND_MS, FrozenClock
from memtasks.domain.errors import ValidationError
from memtasks.domain.gates import (
    CODE_CONFIG,
    ConsolidationConfig,
    Gate,
    GateDecision,
    check_trigger,
    decided_by,
    gates_json,
    last_run_value,
    parse_last_run,
    session_gate,
    sessions_since_ms,
    time_gate,
)

pytestmark = pytest.mark.unit

NOW_MS = FrozenClock().now_ms
NOW_S = NOW_MS // SECOND_MS


# ── the seed's time-gate tests ──────────────────────────────────────────────


def test_time_gate_passes_without_a_prior_run() -> None:
    decision = time_gate(None, NOW_MS, 24.0)
    assert decision.passed
    assert decision.gate is Gate.TIME
    assert "no previous run" in decision.reason


def test_time_gate_rejects_a_run_just_now() -> None:
    decision = time_gate(NOW_S, NOW_MS, 24.0)
    assert not decision.passed
    assert "< 24.0 h" in decision.reason


def test_time_gate_passes_an_old_run() -> None:
    assert time_gate(NOW_S - 7_200, NOW_MS, 1.0).passed


# ── edge cases ─────────────────────────────────────────────────────────────


def test_time_gate_rejects_a_last_run_in_the_future() -> None:
    decision = time_gate(NOW_S + 1, NOW_MS, 0.0)
    assert not decision.passed, "even with min_hours=0 a future last run is refused"
    assert "future" in decision.reason


def test_time_gate_rejects_a_clock_before_1970() -> None:
    decision = time_gate(1, -1, 0.0)
    assert not decision.passed
    assert "before 1970" in decision.reason


def test_time_gate_without_a_prior_run_passes_even_before_1970() -> None:
    # The seed's order: an absent last run passes before the clock is looked at.
    assert time_gate(None, -5 * DAY_MS, 24.0).passed


def test_time_gate_passes_exactly_at_min_hours_and_not_a_millisecond_before() -> None:
    last_s = NOW_S - 24 * 3600
    assert time_gate(last_s, NOW_MS, 24.0).passed
    assert not time_gate(last_s, NOW_MS - 1, 24.0).passed


def test_time_gate_with_fractional_hours() -> None:
    assert time_gate(NOW_S, NOW_MS + HOUR_MS // 2, 0.5).passed
    assert not time_gate(NOW_S, NOW_MS + HOUR_MS // 2 - 1, 0.5).passed


def test_time_gate_in_the_same_second_as_the_last_run_is_not_the_future() -> None:
    # The fact keeps whole seconds (floored): 1.5 s after a run at second 1 is 0.5 s later.
    assert time_gate(NOW_S, NOW_S * SECOND_MS + 500, 0.0).passed


def test_time_gate_records_its_inputs() -> None:
    decision = time_gate(NOW_S - 3600, NOW_MS, 24.0)
    assert decision.detail["last_run_s"] == NOW_S - 3600
    assert decision.detail["hours_since"] == 1.0
    assert decision.detail["min_hours"] == 24.0


# ── the stored fact ────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("not-a-number", None),
        ("12abc", None),
        ("1.5", None),
        ("-5", None),
        ("+5", None),
        ("0", None),
        ("000", None),
        ("1_000", None),
        ("١٢٣", None),  # non-ASCII digits are not Unix seconds
        ("99999999999999999999", None),  # beyond any Unix time we could store
        ("1767225600", 1_767_225_600),
        (" 1767225600\n", 1_767_225_600),
        ("1", 1),
    ],
)
def test_parse_last_run(stored: str | None, expected: int | None) -> None:
    assert parse_last_run(stored) == expected


def test_unparsable_fact_counts_as_absent_so_the_time_gate_passes() -> None:
    assert time_gate(parse_last_run("garbage"), NOW_MS, 24.0).passed


def test_a_stored_zero_counts_as_absent() -> None:
    decision = time_gate(parse_last_run("0"), NOW_MS, 24.0)
    assert decision.passed and decision.detail["last_run_s"] is None


@pytest.mark.parametrize(
    ("now_ms", "expected"), [(NOW_MS, str(NOW_S)), (1_999, "1"), (999, None), (0, None), (-1, None)]
)
def test_last_run_value_is_never_zero_or_pre_1970(now_ms: int, expected: str | None) -> None:
    assert last_run_value(now_ms) == expected


@given(st.integers(min_value=SECOND_MS, max_value=2**50))
def test_last_run_value_round_trips_and_is_never_in_the_future(now_ms: int) -> None:
    value = last_run_value(now_ms)
    assert value is not None
    parsed = parse_last_run(value)
    assert parsed is not None
    assert parsed * SECOND_MS <= now_ms < (parsed + 1) * SECOND_MS
    assert time_gate(parsed, now_ms, 0.0).passed


# ── the session gate ───────────────────────────────────────────────────────


@pytest.mark.parametrize(("count", "passed"), [(0, False), (4, False), (5, True), (50, True)])
def test_session_gate_needs_min_sessions(count: int, passed: bool) -> None:
    decision = session_gate(count, 5)
    assert decision.passed is passed
    assert decision.gate is Gate.SESSION
    assert decision.detail == {"new_sessions": count, "min_sessions": 5}


def test_session_threshold_is_the_last_run_in_milliseconds() -> None:
    assert sessions_since_ms(None) is None
    assert sessions_since_ms(NOW_S) == NOW_S * SECOND_MS


# ── the ledger form ────────────────────────────────────────────────────────


def test_gates_json_lists_decisions_in_order_and_names_the_rejecting_gate() -> None:
    decisions = [
        GateDecision(Gate.LOCK, True, "lock taken"),
        GateDecision(Gate.TIME, True, "no previous run recorded"),
        session_gate(2, 5),
    ]
    body = json.loads(gates_json(decisions, bypassed="none"))
    assert list(body) == ["lock", "time", "session", "decided_by", "bypassed"]
    assert body["session"] == {
        "passed": False,
        "reason": "2 new conversations < 5",
        "new_sessions": 2,
        "min_sessions": 5,
    }
    assert body["decided_by"] == "session"
    assert decided_by(decisions) is Gate.SESSION
    assert decided_by(decisions[:2]) is None
    assert json.loads(gates_json(decisions[:2]))["decided_by"] is None


# ── configuration and trigger ──────────────────────────────────────────────


def test_config_defaults_are_the_seeds() -> None:
    config = ConsolidationConfig()
    assert (config.min_hours, config.min_sessions) == (24.0, 5)
    assert (config.max_message_age_days, config.max_outcomes_per_sender) == (30, 100)
    assert config.delete_batch_size >= 1
    assert config.message_cutoff_ms(NOW_MS) == NOW_MS - 30 * DAY_MS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_hours", -1.0),
        ("min_hours", float("nan")),
        ("min_hours", float("inf")),
        ("min_hours", "24"),
        ("min_sessions", -1),
        ("min_sessions", 2.5),
        ("max_message_age_days", -1),
        ("max_outcomes_per_sender", -3),
        ("max_outcomes_per_sender", True),
        ("delete_batch_size", 0),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field) as info:
        ConsolidationConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.code == CODE_CONFIG


def test_config_is_frozen() -> None:
    config = ConsolidationConfig()
    with pytest.raises(AttributeError):
        config.min_hours = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("trigger", ["", "   ", "x" * 33, "beat\n", 7])
def test_check_trigger_rejects_bad_labels(trigger: object) -> None:
    with pytest.raises(ValidationError, match="trigger"):
        check_trigger(trigger)  # type: ignore[arg-type]


def test_check_trigger_accepts_a_label() -> None:
    assert check_trigger("beat") == "beat"
    assert check_trigger("x" * 32) == "x" * 32
