"""LLM budgets at run time: admit an LLM-bound job before its claim, or defer it to the next
period; settle what it cost. The rules are :mod:`memtasks.domain.budgets`; the fleet-wide
check is :class:`memtasks.storage.budget_repo.BudgetRepo`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from memtasks.config import Settings
from memtasks.domain.budgets import BudgetConfig, Meter, Verdict
from memtasks.domain.clock import SECOND_MS, Clock
from memtasks.storage.budget_repo import Admission, BudgetRepo, Spend

log = logging.getLogger("memtasks.budgets")


def budget_config(settings: Settings) -> BudgetConfig:
    return BudgetConfig(
        fleet=settings.llm_budget,
        per_agent=settings.llm_budget_per_agent,
        period_ms=int(settings.llm_budget_period_s * SECOND_MS),
    )


@dataclass(slots=True)
class Budgets:
    """The budgets of one process. ``reservation_ms``: how long an admitted job's reservation
    holds if its worker dies before settling (twice the lease)."""

    engine: Engine
    config: BudgetConfig
    clock: Clock
    reservation_ms: int

    @property
    def repo(self) -> BudgetRepo:
        return BudgetRepo(self.engine, clock=self.clock)

    def admit(self, job_id: str, lane: str) -> Admission:
        """Room for ``job_id`` (of ``lane``) in every scope it spends from, reserved; or the
        scope that has none."""
        scopes = self.config.scopes(lane)
        now = self.clock()
        if not scopes:
            return Admission(Verdict.ADMIT, None, self.config.period_start(now))
        admission = self.repo.admit(
            job_id, scopes, period_start_ms=self.config.period_start(now), expires_in_ms=self.reservation_ms
        )
        if admission.verdict is Verdict.SPENT:
            log.info(
                "memtasks.budgets: %s deferred to the next period: the %s budget is spent",
                job_id,
                admission.refused_scope,
            )
        return admission

    def defer_ms(self, admission: Admission, wait_ms: int) -> int:
        """How far a refused job moves: to the start of the next period when its budget is
        spent, else ``wait_ms`` (the jobs in flight may leave room)."""
        if admission.verdict is Verdict.SPENT:
            return self.config.next_period_ms(self.clock())
        return wait_ms

    def settle(self, job_id: str, meter: Meter) -> None:
        """Count what the job's model calls reported against the scopes it reserved."""
        if self.repo.settle(job_id, meter.units):
            log.debug("memtasks.budgets: %s cost %.3f in %d calls", job_id, meter.units, meter.calls)

    def release(self, job_id: str) -> None:
        self.repo.release(job_id)

    def spend(self, since_ms: int | None = None) -> list[Spend]:
        return self.repo.spend(since_ms=since_ms)


def budgets_for(engine: Engine, settings: Settings, clock: Clock) -> Budgets | None:
    """The process's budgets; None when no budget is set (nothing is checked)."""
    config = budget_config(settings)
    if not config.active:
        return None
    return Budgets(engine, config, clock, reservation_ms=int(2 * settings.lease_s * SECOND_MS))


__all__ = ["Budgets", "budget_config", "budgets_for"]
