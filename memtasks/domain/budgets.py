"""LLM budgets: how much LLM-bound work may spend per scope and period, and what a job costs.

**Cost.** A model plug-in (the text models' extractor, summariser or embedder when they call
an LLM; the summary backend of LLM decay summaries) reports what each call cost with
:func:`report_cost` — tokens, cents, any unit the budgets are written in. The runner meters
each job: the costs its calls reported while it ran.

**Scopes.** The fleet (``MEMTASKS_LLM_BUDGET``), and each lane — the job's agent or tenant,
see :mod:`memtasks.domain.fairness` — (``MEMTASKS_LLM_BUDGET_PER_AGENT``), per period of
``MEMTASKS_LLM_BUDGET_PERIOD_S`` seconds (aligned to the Unix epoch: a day is a UTC day).

**Admission.** Before an LLM-bound job is claimed, each of its scopes must have room for it:
``spent + reserved + estimate ≤ limit``, where ``reserved`` is what the jobs admitted and not
yet settled are expected to cost and ``estimate`` is the costliest job the scope has settled
this period. While a scope has settled no job this period (no estimate yet), it admits one
job at a time. Jobs that cost no more than the costliest one seen never overspend a scope; a
costlier job overspends it by at most its own excess. A job refused is never claimed (no
attempt spent, never failed): when the period's budget cannot take it (``spent + estimate >
limit``) it is deferred to the start of the next period; when only the jobs in flight fill
the room, it waits a little, as for an LLM permit. Deterministic work never asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

from memtasks.domain.errors import ValidationError

FLEET_SCOPE = "fleet"
LANE_PREFIX = "agent:"
CODE_COST = "llm.cost.invalid"


@dataclass(slots=True)
class Meter:
    """What the model calls of one job reported."""

    units: float = 0.0
    calls: int = 0


_meter: ContextVar[Meter | None] = ContextVar("memtasks_llm_meter", default=None)


def report_cost(units: float) -> None:
    """Report what one model call cost (≥ 0, in the unit the budgets use). Called by a model
    plug-in after each call; outside a metered job it counts nowhere."""
    if isinstance(units, bool) or not isinstance(units, int | float) or not math.isfinite(units) or units < 0:
        raise ValidationError(f"invalid LLM cost {units!r}: a finite number ≥ 0", code=CODE_COST)
    meter = _meter.get()
    if meter is not None:
        meter.units += float(units)
        meter.calls += 1


@contextmanager
def metering() -> Iterator[Meter]:
    """Count the costs reported while the block runs (in this thread or task)."""
    meter = Meter()
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """``fleet`` / ``per_agent``: units per period (None: no such budget)."""

    fleet: float | None = None
    per_agent: float | None = None
    period_ms: int = 86_400_000

    def __post_init__(self) -> None:
        for name in ("fleet", "per_agent"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValidationError(f"invalid LLM budget {name}={value!r}: a finite number ≥ 0")
        if self.period_ms < 1_000:
            raise ValidationError(f"invalid LLM budget period {self.period_ms!r} ms: at least 1 s")

    @property
    def active(self) -> bool:
        return self.fleet is not None or self.per_agent is not None

    def scopes(self, lane: str) -> list[tuple[str, float]]:
        """The scopes a job of ``lane`` spends from, with their limits (fleet first)."""
        found: list[tuple[str, float]] = []
        if self.fleet is not None:
            found.append((FLEET_SCOPE, self.fleet))
        if self.per_agent is not None and lane:
            found.append((LANE_PREFIX + lane, self.per_agent))
        return found

    def period_start(self, now_ms: int) -> int:
        return now_ms - now_ms % self.period_ms

    def next_period_ms(self, now_ms: int) -> int:
        """How long until the next period starts (≥ 1 ms)."""
        return max(1, self.period_start(now_ms) + self.period_ms - now_ms)


class Verdict(StrEnum):
    """What a scope says to one more job."""

    ADMIT = "admit"
    WAIT = "wait"
    """No room now, but the jobs in flight may leave some when they settle: try again shortly."""
    SPENT = "spent"
    """The period's budget cannot take the job: the next period can."""


def verdict(*, limit: float, spent: float, reserved: float, in_flight: int, estimate: float) -> Verdict:
    """Whether a scope has room for one more job (see the module doc)."""
    if estimate <= 0:  # no job settled this period: one at a time
        if spent >= limit:
            return Verdict.SPENT
        return Verdict.ADMIT if in_flight == 0 else Verdict.WAIT
    if spent + estimate > limit:
        return Verdict.SPENT
    return Verdict.ADMIT if spent + reserved + estimate <= limit else Verdict.WAIT


__all__ = [
    "FLEET_SCOPE",
    "LANE_PREFIX",
    "BudgetConfig",
    "Meter",
    "Verdict",
    "metering",
    "report_cost",
    "verdict",
]
