"""Decay jobs in the chaos workload, next to the memory-tree jobs.

Each planned decay job compresses two source memories of its own (``mem_chaos<n>a``/``b``,
inserted before the fleet starts) with the deterministic summary, so its effect is exactly
one summary memory and two supersession edges carrying its id. Three plans:

- ``ok`` — completes on its first attempt unless a fault strikes;
- ``flaky`` — its first attempt fails transiently (a trigger refuses the summary's insert the
  first time: a per-job sequence, which a rollback does not undo), then it completes;
- ``missing`` — one source does not exist: it fails at once as unrecoverable
  (``decay.compress.source_missing``), as planned.

Ids are chosen here (``dj_`` + the plan's number in hex), so an enqueue retried after a
database fault finds its row (``enqueue_as``) instead of inserting a second job; the dispatch
sweep publishes the rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import Engine, text

from memtasks.domain.decay import DecayKind, DecaySpec
from memtasks.storage.decay_queue import DecayJobs
from memtasks.storage.memory_repo import MemoryStore

PLANS = ("ok", "flaky", "missing")
FLAKY_MARK = "chaos-flaky-"
CREATED_BY = "chaos"


@dataclass(frozen=True, slots=True)
class PlannedDecay:
    n: int
    plan: str

    @property
    def job_id(self) -> str:
        return f"dj_{self.n:032x}"

    @property
    def sources(self) -> tuple[str, str]:
        return (f"mem_chaos{self.n}a", f"mem_chaos{self.n}b")

    @property
    def planned_failure(self) -> bool:
        return self.plan == "missing"

    def spec(self) -> DecaySpec:
        return DecaySpec(DecayKind.CANDIDATE_COMPRESSION, self.sources)


def plan_decay(
    count: int, first_n: int, rng: random.Random, flaky: float, missing: float
) -> list[PlannedDecay]:
    jobs: list[PlannedDecay] = []
    for i in range(count):
        roll = rng.random()
        kind = "missing" if roll < missing else "flaky" if roll < missing + flaky else "ok"
        if i < len(PLANS):
            kind = PLANS[i]  # every plan at least once
        jobs.append(PlannedDecay(first_n + i, kind))
    return jobs


def prepare(engine: Engine, jobs: list[PlannedDecay]) -> None:
    """Insert every job's source memories (not the second of a ``missing`` one), then the
    trigger that fails a ``flaky`` job's first summary insert."""
    store = MemoryStore(engine)
    with engine.begin() as conn:
        for job in jobs:
            first, second = job.sources
            mark = f" {FLAKY_MARK}{job.n}." if job.plan == "flaky" else ""
            store.insert_memory(
                claim=f"chaos memory {first}{mark}",
                confidence=0.8,
                authority="agent",
                memory_id=first,
                conn=conn,
            )
            if job.plan != "missing":
                store.insert_memory(
                    claim=f"chaos memory {second}",
                    confidence=0.7,
                    authority="agent",
                    memory_id=second,
                    conn=conn,
                )
            if job.plan == "flaky":
                conn.execute(text(f"CREATE SEQUENCE chaos_flaky_{job.n}"))
        conn.execute(
            text(
                "CREATE FUNCTION chaos_flaky() RETURNS trigger AS $$"
                " DECLARE n text := substring(NEW.claim from '" + FLAKY_MARK + "([0-9]+)');"
                " BEGIN"
                "  IF n IS NOT NULL AND nextval('chaos_flaky_' || n) = 1 THEN"
                "   RAISE EXCEPTION 'chaos: the first summary of flaky decay job % fails as planned', n;"
                "  END IF;"
                "  RETURN NEW;"
                " END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER chaos_flaky BEFORE INSERT ON memories"
                " FOR EACH ROW EXECUTE FUNCTION chaos_flaky()"
            )
        )


def enqueue(decay: DecayJobs, jobs: list[PlannedDecay]) -> None:
    """Insert the rows not stored yet (a retry after a fault finds the ones that were)."""
    for job in jobs:
        decay.enqueue_as(job.spec(), job.job_id, created_by=CREATED_BY)
