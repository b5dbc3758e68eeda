"""The LLM budget rules: periods, scopes and the verdict on one more job."""

from __future__ import annotations

import pytest

from memtasks.domain.budgets import BudgetConfig, Verdict, verdict
from memtasks.domain.errors import ValidationError


def test_the_verdict_admits_waits_or_defers() -> None:
    def say(**kw: float) -> Verdict:
        base = {"limit": 10.0, "spent": 0.0, "reserved": 0.0, "in_flight": 0, "estimate": 0.0}
        return verdict(**{**base, **kw})  # type: ignore[arg-type]

    assert say() is Verdict.ADMIT
    assert say(in_flight=1) is Verdict.WAIT, "no estimate yet: one job at a time"
    assert say(spent=10) is Verdict.SPENT
    assert say(estimate=2, spent=6, reserved=2) is Verdict.ADMIT  # 6 + 2 + 2 = 10
    assert say(estimate=2, spent=6, reserved=4, in_flight=2) is Verdict.WAIT
    assert say(estimate=2, spent=9) is Verdict.SPENT, "the period cannot take a job like the costliest"


def test_scopes_periods_and_bad_budgets() -> None:
    config = BudgetConfig(fleet=100, per_agent=10, period_ms=60_000)
    assert config.scopes("alice") == [("fleet", 100), ("agent:alice", 10)]
    assert config.scopes("") == [("fleet", 100)]
    assert BudgetConfig(per_agent=5).scopes("") == []
    assert (config.period_start(125_000), config.next_period_ms(125_000)) == (120_000, 55_000)
    assert not BudgetConfig().active
    with pytest.raises(ValidationError, match="LLM budget"):
        BudgetConfig(fleet=-1)
    with pytest.raises(ValidationError, match="period"):
        BudgetConfig(fleet=1, period_ms=10)
