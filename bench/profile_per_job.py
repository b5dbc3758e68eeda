"""Where a per-job run spends its time, stage by stage, in one process on PostgreSQL.

    python -m bench.profile_per_job [--jobs N]

Runs the path a ``memtasks.mem_tree.run`` message takes in a worker — claim by id, hold the
lease, the handler (a no-op) and its settle, drop the lease — on a fresh database, and
prints the median and p95 of each stage, the client CPU per job and the database's
round-trip floor (``SELECT 1``). What Celery adds per message is measured by the benchmark
(``bench.run``: bare Celery's per-job figure); this is the part memtasks owns. Writes
``bench/results/profile_per_job.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_PROFILE = PG_ADMIN.rsplit("/", 1)[0] + "/memtasks_profile"


def fresh_database() -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS memtasks_profile WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE memtasks_profile"))
    admin.dispose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def profile(jobs: int) -> dict[str, Any]:
    from memtasks.config import load_settings
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.services.fleet import FleetServices
    from memtasks.services.runtime import open_runtime

    os.environ.update(
        {"MEMTASKS_DATABASE_URL": PG_PROFILE, "MEMTASKS_HANDLERS": "bench.handlers:noop_registry"}
    )
    fresh_database()

    class NoPublisher:
        def mem_tree(self, jobs: Any) -> None:
            return None

        def decay(self, jobs: Any) -> None:
            return None

    services = FleetServices(open_runtime(load_settings()), NoPublisher())
    runner = services.mem_tree
    queue = runner.jobs
    warm = 200
    new = [NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"p{i}"}) for i in range(jobs + warm)]
    ids = [i for i in queue.enqueue_many(new, published=True) if i is not None]
    with runner.engine.begin() as conn:
        conn.execute(text("ANALYZE mem_tree_jobs"))
    for job_id in ids[:warm]:
        runner.run_by_id(job_id)

    stages: dict[str, list[float]] = {"claim": [], "lease hold": [], "handler + settle": [], "lease drop": []}
    total: list[float] = []
    cpu_start = time.process_time()
    for job_id in ids[warm:]:
        t0 = time.perf_counter_ns()
        job = queue.claim(job_id)
        t1 = time.perf_counter_ns()
        assert job is not None
        lease = services.holding.lease(queue, job.lease)
        lease.__enter__()
        t2 = time.perf_counter_ns()
        result = runner.transactions.run(job)
        t3 = time.perf_counter_ns()
        lease.__exit__(None, None, None)
        t4 = time.perf_counter_ns()
        assert result.outcome.value == "done", result
        for name, (a, b) in zip(stages, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
            stages[name].append((b - a) / 1000)
        total.append((t4 - t0) / 1000)
    cpu_per_job = (time.process_time() - cpu_start) / len(total) * 1e6

    raw = runner.engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        driver.autocommit = True
        floor: list[float] = []
        for _ in range(jobs):
            start = time.perf_counter_ns()
            driver.execute("SELECT 1").fetchall()
            floor.append((time.perf_counter_ns() - start) / 1000)
    finally:
        raw.close()
    return {
        "jobs": len(total),
        "stages_us": {
            name: {"p50": round(statistics.median(v), 1), "p95": round(pct(v, 0.95), 1)}
            for name, v in stages.items()
        },
        "total_us": {"p50": round(statistics.median(total), 1), "p95": round(pct(total, 0.95), 1)},
        "client_cpu_us_per_job": round(cpu_per_job, 1),
        "round_trip_floor_us": round(statistics.median(floor), 1),
        "jobs_per_s_one_process": round(len(total) / (sum(total) / 1e6), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args()
    figures = profile(args.jobs)
    out = ROOT / "bench" / "results" / "profile_per_job.json"
    out.write_text(json.dumps(figures, indent=2))
    total = figures["total_us"]["p50"]
    print(f"per-job path in one process, PostgreSQL, {figures['jobs']} no-op jobs (median, p95 µs):")
    for name, v in figures["stages_us"].items():
        print(f"  {name:<18} {v['p50']:>8.1f} {v['p95']:>8.1f}   {100 * v['p50'] / total:5.1f}%")
    print(f"  {'total':<18} {total:>8.1f} {figures['total_us']['p95']:>8.1f}")
    print(f"client CPU per job: {figures['client_cpu_us_per_job']} µs")
    print(f"round-trip floor (SELECT 1): {figures['round_trip_floor_us']} µs")
    print(f"one process: {figures['jobs_per_s_one_process']} jobs/s")


if __name__ == "__main__":
    main()
