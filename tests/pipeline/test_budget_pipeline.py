"""LLM budgets with real ``celery worker`` processes and ``celery beat`` on PostgreSQL: 200
LLM-bound jobs (a probe that reports a cost of 1 per run, as a model plug-in would) against a
budget of 50 per period, four worker processes racing for them: exactly the budgeted work runs
each period, the rest waits unclaimed with no attempt spent and runs when the period renews,
and deterministic jobs run throughout."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select, text

from memtasks.domain.jobs import JobKind, NewJob
from memtasks.storage.engine import get_engine
from memtasks.storage.tables import llm_spend
from memtasks.storage.tables import mem_tree_jobs as t
from tests.pipeline.fleet import Fleet, fleet_env, wait_until
from tests.pipeline.test_pipeline import enqueue_and_publish, settings_from

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERIOD_S = 12
BUDGET = 50
JOBS = 200


def db_now_ms(db_url: str) -> int:
    with get_engine(db_url).connect() as conn:
        return int(
            conn.execute(
                text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
            ).scalar_one()
        )


def counts(db_url: str) -> dict[tuple[str, str, int], int]:
    """(kind, status, attempts) → rows."""
    with get_engine(db_url).connect() as conn:
        rows = conn.execute(
            select(t.c.kind, t.c.status, t.c.attempts, func.count()).group_by(
                t.c.kind, t.c.status, t.c.attempts
            )
        )
        return {(r[0], r[1], int(r[2])): int(r[3]) for r in rows}


def done_llm(db_url: str) -> int:
    return sum(
        n
        for (kind, status, _), n in counts(db_url).items()
        if kind == "reembed_backfill" and status == "done"
    )


def spend(db_url: str) -> dict[int, tuple[float, int]]:
    with get_engine(db_url).connect() as conn:
        rows = conn.execute(
            select(llm_spend.c.period_start_ms, llm_spend.c.spent, llm_spend.c.jobs).where(
                llm_spend.c.scope == "fleet"
            )
        )
        return {int(r[0]): (float(r[1]), int(r[2])) for r in rows}


def test_an_llm_budget_runs_exactly_the_budgeted_work_each_period(
    pg_schema: str,
    fleet: Fleet,
    broker_url: str,
    lock_url: str,
    probes: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db_url = pg_schema
    fleet.env = fleet_env(
        database_url=db_url,
        broker_url=broker_url,
        lock_redis_url=lock_url,
        beat={"dispatch_due": 0.5, "recover": 1.0},
        tree_uses_llm="true",
        llm_permits=4,
        llm_wait_s=0.2,
        llm_budget=BUDGET,
        llm_budget_period_s=PERIOD_S,
    )
    settings = settings_from(fleet.env, monkeypatch)
    fleet.worker("w1", concurrency=2)
    fleet.worker("w2", concurrency=2)
    fleet.beat()
    period_ms = PERIOD_S * 1000
    # Start right after a period begins, so the first one has room to finish its budgeted work.
    wait_until(lambda: db_now_ms(db_url) % period_ms < 2_000, PERIOD_S + 5, "the start of a period")
    first = db_now_ms(db_url) // period_ms * period_ms
    llm = enqueue_and_publish(
        settings, [NewJob(JobKind.REEMBED_BACKFILL, {"probe": f"b{i}", "cost": 1}) for i in range(JOBS)]
    )
    deterministic = enqueue_and_publish(settings, [NewJob(JobKind.FLUSH_STALE, {}) for _ in range(30)])
    assert len(llm) == JOBS and len(deterministic) == 30

    def next_due() -> int | None:
        with get_engine(db_url).connect() as conn:
            found = conn.execute(
                select(func.min(t.c.available_at_ms)).where(
                    t.c.kind == "reembed_backfill", t.c.status == "ready"
                )
            ).scalar_one()
        return None if found is None else int(found)

    def first_period_settled() -> bool:
        # A job refused while others were in flight waits a moment and asks again; once the
        # budget is spent, every refused job is deferred to the next period.
        c = counts(db_url)
        waiting = c.get(("reembed_backfill", "ready", 0), 0)
        return (
            done_llm(db_url) == BUDGET
            and waiting == JOBS - BUDGET
            and c.get(("flush_stale", "done", 1), 0) == 30
            and next_due() == first + period_ms
        )

    wait_until(
        first_period_settled,
        PERIOD_S - 3,
        "50 LLM jobs done, 150 deferred to the next period, the deterministic ones done",
        fleet,
    )
    assert db_now_ms(db_url) < first + period_ms, "all of it inside the first period"
    assert spend(db_url)[first] == (BUDGET, BUDGET)
    assert not any(status == "failed" for (_, status, _) in counts(db_url))

    # The period renews: the next 50 run (dispatched again by the beat), and no more.
    wait_until(lambda: done_llm(db_url) == 2 * BUDGET, PERIOD_S + 10, "50 more after the renewal", fleet)
    second = first + period_ms
    assert spend(db_url)[second][0] <= BUDGET + 1
    assert {int(probes.get(f"probe:b{i}:runs") or 0) for i in range(JOBS)} <= {0, 1}, "no job ran twice"
    assert all(
        attempts == 1
        for (kind, status, attempts) in counts(db_url)
        if kind == "reembed_backfill" and status == "done"
    )
    # The beat first: the workers then shut down without new dispatches arriving meanwhile.
    for name in ("beat", "w1", "w2"):
        fleet.stop(name)
