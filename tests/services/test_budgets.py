"""LLM budgets on a real SQLite file and a real PostgreSQL: admission before the claim, the
estimate, periods, per-agent scopes, racing admissions, and the runner deferring a job out of
budget to the next period with no attempt spent while deterministic work runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from memtasks.domain.budgets import BudgetConfig, Meter, Verdict, metering, report_cost
from memtasks.domain.clock import FrozenClock
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind, JobStatus
from memtasks.domain.text_models import Extraction, KeywordExtractor, TextModels
from memtasks.domain.tree import extract_chunk_job, flush_stale_job
from memtasks.services.budgets import Budgets
from memtasks.services.mem_tree import MemTreeRunner, Outcome
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.tree_repo import NewChunk, TreeStore

pytestmark = pytest.mark.integration

PERIOD_MS = 60_000


def budgets(engine: Engine, clock: FrozenClock, **limits: float) -> Budgets:
    return Budgets(engine, BudgetConfig(period_ms=PERIOD_MS, **limits), clock, reservation_ms=600_000)


def spent(b: Budgets, scope: str = "fleet") -> float:
    now = b.config.period_start(b.clock())
    return next((s.spent for s in b.spend() if s.scope == scope and s.period_start_ms == now), 0.0)


def one(units: float) -> Meter:
    return Meter(units=units, calls=1)


def test_a_scope_admits_one_job_until_a_cost_is_known_then_by_the_estimate(
    engine: Engine, clock: FrozenClock
) -> None:
    b = budgets(engine, clock, fleet=5)
    assert b.admit("j1", "").granted
    refused = b.admit("j2", "")
    assert refused.verdict is Verdict.WAIT and refused.refused_scope == "fleet", "one at a time: no estimate"
    assert b.defer_ms(refused, 5_000) == 5_000, "a job that waits for room waits a little, not a period"
    b.settle("j1", one(1))
    said = [b.admit(f"j{i}", "").verdict for i in range(2, 7)]
    assert said == [Verdict.ADMIT] * 4 + [Verdict.WAIT], "the room is reserved by the four in flight"
    for i in range(2, 6):
        b.settle(f"j{i}", one(1))
    assert spent(b) == 5
    assert b.admit("j7", "").verdict is Verdict.SPENT


def test_a_new_period_renews_the_budget_and_defer_reaches_it(engine: Engine, clock: FrozenClock) -> None:
    b = budgets(engine, clock, fleet=1)
    assert b.admit("j1", "").granted
    b.settle("j1", one(1))
    refused = b.admit("j2", "")
    assert refused.verdict is Verdict.SPENT
    wait = b.defer_ms(refused, 5_000)
    assert 0 < wait <= PERIOD_MS and (clock() + wait) % PERIOD_MS == 0
    clock.advance(wait)
    assert b.admit("j2", "").granted


def test_each_agent_has_its_own_budget_inside_the_fleets(engine: Engine, clock: FrozenClock) -> None:
    b = budgets(engine, clock, fleet=10, per_agent=2)
    for job in ("a1", "a2"):
        assert b.admit(job, "alice").granted
        b.settle(job, one(1))
    refused = b.admit("a3", "alice")
    assert not refused.granted and refused.refused_scope == "agent:alice"
    assert b.admit("b1", "bob").granted
    assert b.admit("s1", "").granted, "a job of no agent spends from the fleet alone"
    assert spent(b, "fleet") == 2 and spent(b, "agent:alice") == 2


def test_a_released_or_expired_reservation_frees_its_room(engine: Engine, clock: FrozenClock) -> None:
    b = Budgets(engine, BudgetConfig(fleet=3, period_ms=PERIOD_MS), clock, reservation_ms=1_000)
    assert b.admit("j1", "").granted
    b.release("j1")
    assert b.admit("j2", "").granted  # j2 never settles: its worker died
    assert not b.admit("j3", "").granted
    clock.advance(1_000)
    assert b.admit("j3", "").granted


def test_racing_admissions_never_overspend_by_more_than_one_job(engine: Engine) -> None:
    clock = FrozenClock()
    b = budgets(engine, clock, fleet=50)
    ran: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(40):
            job = f"w{n}-{i}"
            while (said := b.admit(job, "").verdict) is Verdict.WAIT:
                pass  # another worker's job is in flight: ask again, as a redelivery would
            if said is Verdict.SPENT:
                return
            with lock:
                ran.append(job)
            b.settle(job, one(1))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(ran) == 50 and spent(b) == 50, "each job cost what the estimate said: no overspend at all"


def test_report_cost_counts_inside_a_metered_job_only() -> None:
    report_cost(5)  # outside a job: counted nowhere
    with metering() as meter:
        report_cost(2)
        report_cost(0.5)
    assert (meter.units, meter.calls) == (2.5, 2)
    for bad in (-1, float("nan"), "3", True):
        with pytest.raises(ValidationError, match="invalid LLM cost"):
            report_cost(bad)  # type: ignore[arg-type]


@dataclass
class CostlyExtractor:
    """An extractor that calls "a model" costing 1 unit per call."""

    inner: KeywordExtractor

    def extract(self, text: str) -> Extraction:
        report_cost(1)
        return self.inner.extract(text)


def test_the_runner_defers_an_llm_job_out_of_budget_and_runs_deterministic_work(
    engine: Engine, jobs: MemTreeJobs, clock: FrozenClock
) -> None:
    TreeStore(engine, clock=clock).add_chunks(
        [NewChunk(id=f"c{i}", tree_id="t", source_id="s", content=f"Alice met Bob {i}.") for i in range(3)]
    )
    runner = MemTreeRunner(
        engine,
        jobs,
        models=TextModels(extractor=CostlyExtractor(KeywordExtractor())),
        clock=clock,
        llm=True,
        budgets=budgets(engine, clock, fleet=2),
    )
    ids = [jobs.enqueue(extract_chunk_job(f"c{i}")) for i in range(3)]
    outcomes = [runner.run_by_id(str(i)) for i in ids]
    assert [o.outcome if o else None for o in outcomes] == [Outcome.DONE, Outcome.DONE, Outcome.WAITING]
    deferred = jobs.get(str(ids[2]))
    assert deferred is not None and deferred.status is JobStatus.READY and deferred.attempts == 0
    assert deferred.available_at_ms == clock() - clock() % PERIOD_MS + PERIOD_MS
    assert runner.budgets is not None and spent(runner.budgets) == 2
    # Deterministic work is never held back.
    flush = jobs.enqueue(flush_stale_job(clock()))
    done = runner.run_by_id(str(flush))
    assert done is not None and done.outcome is Outcome.DONE and done.kind == JobKind.FLUSH_STALE
    clock.advance(PERIOD_MS)
    again = runner.run_by_id(str(ids[2]))
    assert again is not None and again.outcome is Outcome.DONE and again.attempts == 1
