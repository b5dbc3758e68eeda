"""Medians, spreads and the one rule that says whether a target is met.

Every figure is measured once per round; a round runs every system, in a rotating order.
A figure reports its median and its spread (lowest and highest round). A ratio of two
systems is taken round by round (both measured in the same round), so its spread is the
spread of those per-round ratios.

**Met** means the whole spread is on the target's side: for "≥ T" the lowest round is at
least T, for "≤ T" the highest round is at most T. A median that meets the target while one
round does not is a margin inside the spread, and is not met.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        """The rounds' values; a round that measured nothing (NaN) is left out, and with none
        left the spread is NaN (never met)."""
        kept = [v for v in values if not math.isnan(v)]
        if not kept:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(kept), min(kept), max(kept), len(kept))

    @property
    def relative(self) -> float:
        """Half the range, as a fraction of the median (0 for one round)."""
        return 0.0 if not self.median else (self.high - self.low) / 2 / abs(self.median)

    def text(self, digits: int = 2) -> str:
        if self.rounds == 1 or self.low == self.high:
            return f"{self.median:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f}–{self.high:,.{digits}f})"


@dataclass(frozen=True, slots=True)
class Target:
    """``op`` is ``≥`` or ``≤``; ``value`` the bound; ``text`` as the report shows it."""

    op: str
    value: float
    text: str

    def met(self, spread: Spread) -> bool:
        if spread.rounds == 0:
            return False
        if self.op == "≥":
            return spread.low >= self.value
        if self.op == "≤":
            return spread.high <= self.value
        raise ValueError(f"unknown target operator {self.op!r}")


def at_least(value: float, text: str | None = None) -> Target:
    return Target("≥", value, text or f"≥ {value:g}")


def at_most(value: float, text: str | None = None) -> Target:
    return Target("≤", value, text or f"≤ {value:g}")


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Round-by-round ratios (both lists hold one value per round, in round order)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} rounds against {len(denominator)}")
    return [
        a / b if b and not math.isnan(b) else math.nan for a, b in zip(numerator, denominator, strict=True)
    ]


__all__ = ["Spread", "Target", "at_least", "at_most", "ratios"]
