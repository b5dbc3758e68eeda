"""LLM spend per scope and period (``llm_spend``) and the admitted jobs' reservations
(``llm_reservations``): the fleet-wide check before an LLM-bound job is claimed.

An admission is one transaction over every scope of the job: each scope's spend row is locked
(PostgreSQL ``SELECT … FOR UPDATE``, scopes in a fixed order; SQLite's one writer), the room is
checked against the live reservations (``expires_at_ms`` not passed) and, when every scope has
room, the job's reservations are written. Two workers admitting at once are serialised on the
spend row, so neither sees the scope emptier than it is. A settle adds the job's metered cost
to each scope it reserved and removes its reservations, in one transaction. A reservation whose
worker died expires (twice the lease); :meth:`Budgets.drop_expired` deletes such rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, delete, func, select, update

from memtasks.domain.budgets import Verdict, verdict
from memtasks.domain.clock import Clock
from memtasks.storage.rows import dialect_insert, reading
from memtasks.storage.tables import llm_reservations as r
from memtasks.storage.tables import llm_spend as s


@dataclass(frozen=True, slots=True)
class Admission:
    """``verdict``: ADMIT (reserved), WAIT (try again shortly) or SPENT (the next period)."""

    verdict: Verdict
    refused_scope: str | None = None
    period_start_ms: int = 0

    @property
    def granted(self) -> bool:
        return self.verdict is Verdict.ADMIT


@dataclass(frozen=True, slots=True)
class Spend:
    """One scope's period: spent, limit-free facts (the limit is a setting), jobs, estimate,
    and what the admitted jobs in flight reserve."""

    scope: str
    period_start_ms: int
    spent: float
    jobs: int
    max_job_cost: float
    reserved: float
    in_flight: int


class _NoRoom(Exception):
    def __init__(self, scope: str, said: Verdict) -> None:
        super().__init__(scope)
        self.scope = scope
        self.verdict = said


class BudgetRepo:
    def __init__(self, engine: Engine, *, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def admit(
        self, job_id: str, scopes: list[tuple[str, float]], *, period_start_ms: int, expires_in_ms: int
    ) -> Admission:
        """Reserve room for ``job_id`` in every scope of ``scopes`` (name, limit), or in none."""
        now = self.clock()
        try:
            with self.engine.begin() as c:
                self._reserve(c, job_id, scopes, period_start_ms, now, now + expires_in_ms)
        except _NoRoom as refused:
            return Admission(refused.verdict, refused.scope, period_start_ms)
        return Admission(Verdict.ADMIT, None, period_start_ms)

    def _reserve(
        self,
        c: Connection,
        job_id: str,
        scopes: list[tuple[str, float]],
        period_start_ms: int,
        now: int,
        expires_at_ms: int,
    ) -> None:
        """In ``c``'s transaction; :class:`_NoRoom` (rolling it back) when a scope is full."""
        for scope, limit in sorted(scopes):
            c.execute(
                dialect_insert(c, s)
                .values(scope=scope, period_start_ms=period_start_ms, updated_at_ms=now)
                .on_conflict_do_nothing()
            )
            row = select(s.c.spent, s.c.max_job_cost).where(
                s.c.scope == scope, s.c.period_start_ms == period_start_ms
            )
            if c.dialect.name == "postgresql":
                row = row.with_for_update()
            spent, estimate = c.execute(row).one()
            reserved, in_flight = c.execute(
                select(func.coalesce(func.sum(r.c.amount), 0.0), func.count()).where(
                    r.c.scope == scope,
                    r.c.period_start_ms == period_start_ms,
                    r.c.expires_at_ms > now,
                    r.c.job_id != job_id,
                )
            ).one()
            said = verdict(
                limit=limit,
                spent=float(spent),
                reserved=float(reserved),
                in_flight=int(in_flight),
                estimate=float(estimate),
            )
            if said is not Verdict.ADMIT:
                raise _NoRoom(scope, said)
            c.execute(delete(r).where(r.c.job_id == job_id, r.c.scope == scope))
            c.execute(
                r.insert().values(
                    job_id=job_id,
                    scope=scope,
                    period_start_ms=period_start_ms,
                    amount=float(estimate),
                    expires_at_ms=expires_at_ms,
                )
            )

    def settle(self, job_id: str, cost: float) -> int:
        """Add ``cost`` to each scope ``job_id`` reserved and drop its reservations; how many."""
        now = self.clock()
        with self.engine.begin() as c:
            held = c.execute(select(r.c.scope, r.c.period_start_ms).where(r.c.job_id == job_id)).all()
            for scope, period in held:
                c.execute(
                    update(s)
                    .where(s.c.scope == scope, s.c.period_start_ms == period)
                    .values(
                        spent=s.c.spent + cost,
                        jobs=s.c.jobs + 1,
                        max_job_cost=func.greatest(s.c.max_job_cost, cost)
                        if c.dialect.name == "postgresql"
                        else func.max(s.c.max_job_cost, cost),
                        updated_at_ms=now,
                    )
                )
            c.execute(delete(r).where(r.c.job_id == job_id))
        return len(held)

    def release(self, job_id: str) -> None:
        """Drop ``job_id``'s reservations without spending (it was not claimed after all)."""
        with self.engine.begin() as c:
            c.execute(delete(r).where(r.c.job_id == job_id))

    def drop_expired(self) -> int:
        with self.engine.begin() as c:
            return int(c.execute(delete(r).where(r.c.expires_at_ms <= self.clock())).rowcount)

    def spend(self, *, since_ms: int | None = None) -> list[Spend]:
        """Every scope's periods (newest first), from ``since_ms`` on if given."""
        now = self.clock()
        live = and_(
            r.c.scope == s.c.scope, r.c.period_start_ms == s.c.period_start_ms, r.c.expires_at_ms > now
        )
        reserved = select(func.coalesce(func.sum(r.c.amount), 0.0)).where(live).scalar_subquery()
        in_flight = select(func.count()).where(live).scalar_subquery()
        query = select(s, reserved.label("reserved"), in_flight.label("in_flight")).order_by(
            s.c.period_start_ms.desc(), s.c.scope
        )
        if since_ms is not None:
            query = query.where(s.c.period_start_ms >= since_ms)
        with reading(self.engine) as c:
            return [
                Spend(
                    scope=str(row.scope),
                    period_start_ms=int(row.period_start_ms),
                    spent=float(row.spent),
                    jobs=int(row.jobs),
                    max_job_cost=float(row.max_job_cost),
                    reserved=float(row.reserved),
                    in_flight=int(row.in_flight),
                )
                for row in c.execute(query)
            ]


__all__ = ["Admission", "BudgetRepo", "Spend"]
