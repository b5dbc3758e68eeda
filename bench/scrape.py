"""What a scrape costs at a million job rows: the old path against the snapshot, on PostgreSQL.

    python -m bench.scrape [--rows 1000000] [--burst-s 3] [--interval-s 0.5]

Fills ``mem_tree_jobs`` of a private schema with ``--rows`` rows (``INSERT … SELECT
generate_series``: mostly done, some failed, ready, running and cancelled, six kinds, one
finishing per millisecond) and 10,000 decay jobs, then measures, in the same run:

* **old collect** — what every scrape and probe ran before: the status report with the
  five ``GROUP BY`` passes over the job table (the baseline, kept here verbatim);
* **refresh** — one read of the snapshot: the status report (one pass over the table, the
  rest through partial indexes) and the histograms' read of the jobs finished in the last
  interval (~15,000 rows at this rate);
* **cached scrape** — ``/metrics`` rendered from the snapshot;
* **burst** — HTTP scrapes and probes from 8 threads, as fast as they go, for ``--burst-s``
  with a ``--interval-s`` interval: the reads of the tables (statements counted) against the
  intervals that passed.

Prints the figures and writes ``bench/results/scrape.json`` and ``bench/results/scrape.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url

from memtasks.metrics import QueueCollector, SnapshotCache
from memtasks.metrics.server import make_app, serve
from memtasks.services.job_timings import JobTimings
from memtasks.services.job_view import JobLookup
from memtasks.storage.engine import get_engine, reset_registry
from memtasks.storage.rows import reading
from memtasks.storage.stats_repo import JobTable, Watermark, finished_after, queue_stats
from memtasks.storage.tables import decay_jobs as d
from memtasks.storage.tables import mem_tree_jobs as t

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BASE_MS = 1_767_225_600_000

FILL = """
INSERT INTO mem_tree_jobs (id, kind, priority, payload_json, status, attempts, max_attempts,
    available_at_ms, created_at_ms, started_at_ms, completed_at_ms, failure_class,
    lease_token, locked_until_ms, updated_at_ms)
SELECT 'job:' || lpad(to_hex(i), 12, '0'),
    (ARRAY['seal', 'flush_stale', 'append_buffer', 'extract_chunk', 'reembed_backfill',
        'seal_document'])[1 + i % 6],
    1 + i % 4, '{}', s.status, CASE WHEN s.status = 'ready' THEN i % 2 ELSE 1 END, 5,
    :base + i - 40, :base + i - 50,
    CASE WHEN s.status IN ('done', 'failed', 'running') THEN :base + i - 20 END,
    CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN :base + i END,
    CASE WHEN s.status = 'failed' THEN (ARRAY['transient','unrecoverable'])[1 + i % 2] END,
    CASE WHEN s.status = 'running' THEN 'token' END,
    CASE WHEN s.status = 'running' THEN :base + i + 300000 END,
    :base + i
FROM generate_series(1, :rows) AS i,
LATERAL (SELECT CASE WHEN i % 100 < 90 THEN 'done' WHEN i % 100 < 95 THEN 'failed'
    WHEN i % 100 < 98 THEN 'ready' WHEN i % 100 < 99 THEN 'running' ELSE 'cancelled' END AS status) AS s
"""
FILL_DECAY = """
INSERT INTO decay_jobs (id, kind, source_ids_json, summary_method, attestation_required, state,
    state_reason, scheduled_for_ms, created_at_ms, created_by, updated_at_ms, attempts, max_attempts,
    started_at_ms, completed_at_ms)
SELECT 'dj_' || lpad(to_hex(i), 32, '0'), 'candidate_compression', '["a","b"]',
    'deterministic_concatenate', true, CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'completed' END, NULL,
    :base + i * 100 - 50, :base + i * 100 - 50, 'bench', :base + i * 100,
    CASE WHEN i % 10 = 0 THEN 0 ELSE 1 END, 3, CASE WHEN i % 10 = 0 THEN NULL ELSE :base + i * 100 - 10 END,
    CASE WHEN i % 10 = 0 THEN NULL ELSE :base + i * 100 END
FROM generate_series(1, 10000) AS i
"""


def old_queue_stats(engine: Engine, now_ms: int) -> None:
    """The previous ``queue_stats``: five passes over ``mem_tree_jobs`` (the baseline)."""
    with reading(engine) as c, c.begin():
        c.execute(select(t.c.kind, t.c.status, func.count()).group_by(t.c.kind, t.c.status)).all()
        c.execute(
            select(t.c.kind, func.min(t.c.available_at_ms))
            .where(t.c.status == "ready", t.c.available_at_ms <= now_ms)
            .group_by(t.c.kind)
        ).all()
        c.execute(
            select(t.c.kind, func.count())
            .where(t.c.status == "running", t.c.locked_until_ms < now_ms)
            .group_by(t.c.kind)
        ).all()
        c.execute(
            select(t.c.kind, func.count()).where(t.c.status == "ready", t.c.attempts > 0).group_by(t.c.kind)
        ).all()
        c.execute(
            select(t.c.kind, t.c.failure_class, func.count())
            .where(t.c.status == "failed")
            .group_by(t.c.kind, t.c.failure_class)
        ).all()
        c.execute(select(d.c.state, func.count()).group_by(d.c.state)).all()
        c.execute(select(func.count()).where(d.c.state == "in_progress", d.c.locked_until_ms < now_ms)).one()


def old_collect(engine: Engine, now_ms: int) -> None:
    """A scrape before the snapshot: the status report's other reads plus the old queue stats."""
    from memtasks.services.status import status_report

    status_report(engine, lambda: now_ms)  # ledger, sweeps, summaries, failures (unchanged, small)
    old_queue_stats(engine, now_ms)


def timed(call: Callable[[], Any], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values), 3), "min_ms": round(min(values), 3),
            "max_ms": round(max(values), 3), "rounds": len(values)}  # fmt: skip


def plans(engine: Engine, now_ms: int) -> dict[str, str]:
    """The top of each plan: where the one pass scans, where the indexes serve."""
    queries = {
        "counts (one pass)": (
            "SELECT kind, status, failure_class, count(*), sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END)"
            " FROM mem_tree_jobs GROUP BY kind, status, failure_class"
        ),
        "oldest ready": (
            f"SELECT kind, min(available_at_ms) FROM mem_tree_jobs WHERE status = 'ready'"
            f" AND available_at_ms <= {now_ms} GROUP BY kind"
        ),
        "expired leases": (
            f"SELECT kind, count(*) FROM mem_tree_jobs WHERE status = 'running'"
            f" AND locked_until_ms < {now_ms} GROUP BY kind"
        ),
        "finished since watermark": (
            f"SELECT id FROM mem_tree_jobs WHERE completed_at_ms >= {now_ms - 25_000}"
            f" AND completed_at_ms <= {now_ms - 10_000} AND status IN ('done', 'failed')"
            " ORDER BY completed_at_ms, id LIMIT 50000"
        ),
    }
    found = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            lines = [row[0] for row in conn.execute(text("EXPLAIN " + sql))]
            found[name] = " / ".join(line.strip() for line in lines if "Scan" in line or "Aggregate" in line)[
                :200
            ]
    return found


def burst(engine: Engine, now_ms: int, seconds: float, interval_s: float) -> dict[str, Any]:
    cache = SnapshotCache(engine, interval_s=interval_s, clock=lambda: now_ms, timings=JobTimings(engine))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(cache))
    server, thread = serve(make_app(registry, cache, JobLookup(engine)), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    statements = [0]
    lock = threading.Lock()

    def seen(*_: Any) -> None:
        with lock:
            statements[0] += 1

    requests = [0]
    stop = time.monotonic() + seconds

    def client(path: str) -> None:
        while time.monotonic() < stop:
            with urllib.request.urlopen(base + path, timeout=30) as reply:  # noqa: S310 - our http URL
                reply.read()
            with lock:
                requests[0] += 1

    cache.get()  # the first read, before the clock starts
    per_read = cache.reads
    event.listen(engine, "before_cursor_execute", seen)
    started = time.monotonic()
    first_read = cache.reads
    workers = [threading.Thread(target=client, args=("/metrics" if i % 2 else "/healthz",)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    event.remove(engine, "before_cursor_execute", seen)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    reads = cache.reads - first_read
    return {
        "seconds": round(elapsed, 2),
        "interval_s": interval_s,
        "requests": requests[0],
        "requests_per_s": round(requests[0] / elapsed),
        "table_reads": reads,
        "intervals": int(elapsed // interval_s),
        "statements": statements[0],
        "reads_before": per_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--burst-s", type=float, default=3.0)
    parser.add_argument("--interval-s", type=float, default=0.5)
    args = parser.parse_args()

    schema = f"bench_scrape_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    try:
        engine = get_engine(url)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(FILL), {"base": BASE_MS, "rows": args.rows})
            conn.execute(text(FILL_DECAY), {"base": BASE_MS})
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        fill_s = time.perf_counter() - t0
        print(f"filled {args.rows:,} mem-tree job rows and 10,000 decay jobs in {fill_s:.1f} s")
        now_ms = BASE_MS + args.rows + 10_000  # the newest row finished 10 s ago

        old_collect(engine, now_ms)  # warm the cache of the database alike for both
        old = timed(lambda: old_collect(engine, now_ms), 5)
        new_stats = timed(lambda: queue_stats(engine, now_ms), 5)

        def refresh() -> None:
            timings = JobTimings(engine, since_ms=now_ms - 10_000 - 15_000)  # one 15 s interval's jobs
            SnapshotCache(engine, interval_s=60, clock=lambda: now_ms, timings=timings).get()

        fresh = timed(refresh, 5)
        finished = finished_after(
            engine, JobTable.MEM_TREE, Watermark(now_ms - 25_000), now_ms - 10_000, 50_000
        )
        cache = SnapshotCache(engine, interval_s=3600, clock=lambda: now_ms)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(QueueCollector(cache))
        generate_latest(registry)  # the one read
        cached = timed(lambda: generate_latest(registry), 200)
        assert cache.reads == 1
        flood = burst(engine, now_ms, args.burst_s, args.interval_s)
        explained = plans(engine, now_ms)
    finally:
        reset_registry()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    figures = {
        "rows": args.rows,
        "fill_s": round(fill_s, 1),
        "old_collect": summary(old),
        "new_queue_stats": summary(new_stats),
        "refresh": summary(fresh),
        "refresh_histogram_rows": len(finished),
        "cached_scrape": summary(cached),
        "burst": flood,
        "plans": explained,
    }
    line = (
        f"At {args.rows:,} job rows (PostgreSQL, 2 CPUs): the old per-scrape collect "
        f"{figures['old_collect']['median_ms']:.0f} ms; one snapshot refresh "
        f"{figures['refresh']['median_ms']:.0f} ms (counts {figures['new_queue_stats']['median_ms']:.0f} ms "
        f"+ {len(finished):,} finished jobs into the histograms); a scrape from the snapshot "
        f"{figures['cached_scrape']['median_ms']:.2f} ms. {flood['requests']:,} scrapes and probes in "
        f"{flood['seconds']} s ({flood['requests_per_s']:,}/s) read the tables {flood['table_reads']} times "
        f"in {flood['intervals']} intervals of {flood['interval_s']} s."
    )
    print(json.dumps(figures, indent=2))
    print(line)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scrape.json").write_text(json.dumps(figures, indent=2) + "\n")
    (RESULTS / "scrape.md").write_text(line + "\n")


if __name__ == "__main__":
    main()
