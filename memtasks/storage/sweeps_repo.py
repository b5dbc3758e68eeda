"""The ``sweeps`` table: one row per periodic sweep, its last slot and how it went.

A beat tick claims slot ``now // interval`` with a compare-and-set on ``last_slot``:
of any number of ticks for the same slot (two beats, a late duplicate message) exactly
one gets it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from memtasks.domain.clock import Clock, system_clock
from memtasks.storage.rows import reading
from memtasks.storage.tables import sweeps as t

MAX_DETAIL_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class SweepRecord:
    name: str
    last_slot: int
    interval_ms: int
    started_at_ms: int
    finished_at_ms: int | None
    outcome: str
    detail: str | None


class Sweeps:
    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    def _start(self, interval_ms: int) -> tuple[int, dict[str, object]]:
        """The current slot and the row of a run of it starting now."""
        now = self.clock()
        slot = now // interval_ms
        values: dict[str, object] = {
            "last_slot": slot,
            "interval_ms": interval_ms,
            "started_at_ms": now,
            "finished_at_ms": None,
            "outcome": "running",
            "detail": None,
        }
        return slot, values

    def claim_slot(self, name: str, interval_ms: int) -> int | None:
        """The current slot when this call is the first to claim it, else None."""
        slot, values = self._start(interval_ms)
        with self.engine.begin() as c:
            claimed = c.execute(
                update(t).where(t.c.name == name, t.c.last_slot < slot).values(values)
            ).rowcount
            if claimed == 0:
                dialect = postgresql if c.dialect.name == "postgresql" else sqlite
                inserted = dialect.insert(t).values(name=name, **values).on_conflict_do_nothing()
                claimed = len(c.execute(inserted.returning(t.c.name)).all())
        return slot if claimed == 1 else None

    def record_tick(self, name: str, interval_ms: int) -> int:
        """Record a tick of a sweep that guards itself: its slot, claimed or not (never refused)."""
        slot, values = self._start(interval_ms)
        with self.engine.begin() as c:
            dialect = postgresql if c.dialect.name == "postgresql" else sqlite
            upsert = dialect.insert(t).values(name=name, **values)
            c.execute(upsert.on_conflict_do_update(index_elements=[t.c.name], set_=values))
        return slot

    def finish(self, name: str, slot: int, *, ok: bool, detail: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(
                update(t)
                .where(t.c.name == name, t.c.last_slot == slot)
                .values(
                    finished_at_ms=self.clock(),
                    outcome="ok" if ok else "failed",
                    detail=None if detail is None else detail[:MAX_DETAIL_CHARS],
                )
            )

    def all(self) -> list[SweepRecord]:
        with reading(self.engine) as c:
            rows = c.execute(select(t).order_by(t.c.name)).all()
        return [
            SweepRecord(
                r.name, r.last_slot, r.interval_ms, r.started_at_ms, r.finished_at_ms, r.outcome, r.detail
            )
            for r in rows
        ]


__all__ = ["SweepRecord", "Sweeps"]
