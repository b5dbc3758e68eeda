"""The ``operator_actions`` table: what operators did to jobs by hand, who and when."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from memtasks.domain.clock import Clock, system_clock
from memtasks.storage.rows import reading
from memtasks.storage.tables import operator_actions as t

MAX_TARGET_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class OperatorAction:
    at_ms: int
    actor: str
    via: str
    action: str
    target: str
    affected: int


class OperatorActions:
    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.engine = engine
        self.clock = clock

    def record(self, *, actor: str, via: str, action: str, target: str, affected: int) -> OperatorAction:
        done = OperatorAction(
            at_ms=self.clock(),
            actor=actor[:200],
            via=via[:16],
            action=action[:40],
            target=target[:MAX_TARGET_CHARS],
            affected=affected,
        )
        with self.engine.begin() as c:
            c.execute(
                insert(t).values(
                    at_ms=done.at_ms,
                    actor=done.actor,
                    via=done.via,
                    action=done.action,
                    target=done.target,
                    affected=done.affected,
                )
            )
        return done

    def recent(self, *, target: str | None = None, limit: int = 50) -> list[OperatorAction]:
        """The newest first; of one target (a job id) if given."""
        stmt = select(t).order_by(t.c.at_ms.desc(), t.c.id.desc()).limit(limit)
        if target is not None:
            stmt = stmt.where(t.c.target == target)
        with reading(self.engine) as c:
            return [
                OperatorAction(
                    at_ms=int(r.at_ms),
                    actor=str(r.actor),
                    via=str(r.via),
                    action=str(r.action),
                    target=str(r.target),
                    affected=int(r.affected),
                )
                for r in c.execute(stmt)
            ]


__all__ = ["OperatorAction", "OperatorActions"]
