"""The fair-share rules: which lane a job is in, and where its new jobs go."""

from __future__ import annotations

import pytest

from memtasks.domain.errors import MalformedPayload
from memtasks.domain.fairness import LANE_SPACING_MS, SHARED_LANE, check_fair_key, lane_of, places

S = LANE_SPACING_MS


def test_the_lane_is_the_producers_key_else_the_payloads_else_shared() -> None:
    assert lane_of({"agent_id": "a"}, "t") == "t"
    assert lane_of({"agent_id": "a", "tenant_id": "t"}) == "a"
    assert lane_of({"tenant_id": "t"}) == "t"
    for payload in ({}, {"agent_id": 3}, {"agent_id": ""}, {"agent_id": "x" * 129}, {"agent_id": "a\x00"}):
        assert lane_of(payload) == SHARED_LANE


@pytest.mark.parametrize("bad", ["", " ", "x" * 129, "nul\x00", 7, None])
def test_a_bad_key_is_refused_naming_fair_key(bad: object) -> None:
    with pytest.raises(MalformedPayload, match="fair_key"):
        check_fair_key(bad)


def test_an_empty_lane_places_at_the_due_time_a_busy_one_after_its_end() -> None:
    assert places(["a", "a", "a"], [100, 100, 100], {}) == [100, 100 + S, 100 + 2 * S]
    assert places(["a"], [100], {"a": 5_000}) == [5_000 + S]
    assert places(["a"], [10 * S], {"a": 0}) == [10 * S], "never before it is due"


def test_two_lanes_of_one_batch_are_placed_apart() -> None:
    assert places(["a", "b", "a", "b"], [0, 0, 0, 0], {"a": None, "b": 7 * S}) == [0, 8 * S, S, 9 * S]


def test_one_due_time_per_job() -> None:
    with pytest.raises(ValueError, match="one due time"):
        places(["a"], [], {})
