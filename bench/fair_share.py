"""Fair share with real workers on PostgreSQL: one agent's backlog against another agent's jobs.

Agent ``big`` has ``--backlog`` ``extract_chunk`` jobs queued (enqueued in batches of 1,000
and published as the producer API publishes them: drain messages); the workers (``celery
worker``, 2 prefork processes, the no-op handler) start on them; once they are under way,
agent ``small`` enqueues ``--small`` jobs one at a time, every 20 ms, each published as its own
message. Measured per round: how long each of ``small``'s jobs waited from its enqueue to its
start (the database's clock at both ends: ``started_at_ms − created_at_ms``), and the rate at
which the fleet drained the whole backlog (jobs finished after the first poll that saw one
done, over the time to the last).

Run it on this tree, and on a tree of the code before fair share to compare (``python -m
bench.fair_share --label before`` from that tree's root, with this file copied there): the
same scenario, the same harness. Results are appended to ``bench/results/fair_share.json``
of the tree it runs from; ``--merge`` prints the runs of several files side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.harness.systems import (
    MEMTASKS_QUEUES,
    ROOT,
    Memtasks,
    SystemFailed,
    celery_worker,
    reset_databases,
    say,
    steady,
    watch,
)

RESULTS = ROOT / "bench" / "results" / "fair_share.json"
BATCH = 1_000
SMALL_EVERY_S = 0.02


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def one_round(backlog: int, small: int) -> dict[str, Any]:
    from memtasks.domain.jobs import JobKind, NewJob
    from memtasks.services.mem_tree import Followup

    client = Memtasks("fair share", "noop", {})
    try:
        client.empty()
        for start in range(0, backlog, BATCH):
            new = [
                NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"big-{i}", "agent_id": "big"})
                for i in range(start, min(backlog, start + BATCH))
            ]
            ids = client.jobs.enqueue_many(new, published=True)
            client.publisher.mem_tree([Followup(i, "extract_chunk") for i in ids if i])
        with client.engine.begin() as conn:
            conn.execute(text("ANALYZE mem_tree_jobs"))
        total = backlog + small
        with celery_worker("fair share", "memtasks.worker.app", client.environment, MEMTASKS_QUEUES) as alive:
            deadline = time.monotonic() + 120
            while client.progress()[1] < min(2_000, backlog // 10):  # the backlog is under way
                alive()
                if time.monotonic() > deadline:
                    raise SystemFailed("fair share", "the workers did not start on the backlog in 120 s")
                time.sleep(0.05)
            small_ids = []
            for i in range(small):
                job_id = client.jobs.enqueue(
                    NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"small-{i}", "agent_id": "small"}),
                    published=True,
                )
                assert job_id is not None
                client.publisher.mem_tree([Followup(job_id, "extract_chunk")])
                small_ids.append(job_id)
                time.sleep(SMALL_EVERY_S)
            end, first, count = watch("fair share", client.progress, total, max(300.0, total / 50), alive)
        with client.engine.connect() as conn:
            waits = [
                float(w)
                for (w,) in conn.execute(
                    text(
                        "SELECT started_at_ms - created_at_ms FROM mem_tree_jobs"
                        " WHERE id = ANY(CAST(:ids AS text[]))"
                    ),
                    {"ids": small_ids},
                )
            ]
            left_behind = conn.execute(
                text(
                    "SELECT count(*) FROM mem_tree_jobs WHERE payload_json LIKE '%big%'"
                    " AND started_at_ms > (SELECT max(started_at_ms) FROM mem_tree_jobs"
                    " WHERE id = ANY(CAST(:ids AS text[])))"
                ),
                {"ids": small_ids},
            ).scalar_one()
        return {
            "small_start_p50_ms": pct(waits, 0.5),
            "small_start_p95_ms": pct(waits, 0.95),
            "small_start_max_ms": max(waits),
            "backlog_jobs_started_after_the_last_small_one": int(left_behind),
            "drain_per_s": steady(total, end, first, count),
        }
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--label", default="fair share")
    parser.add_argument("--merge", nargs="*", type=Path, help="print the runs saved in these files")
    args = parser.parse_args(argv)
    if args.merge:
        for path in args.merge:
            for run in json.loads(path.read_text()):
                print(json.dumps(run))
        return 0
    runs = []
    for n in range(args.rounds):
        reset_databases()
        say(
            f"{args.label}: round {n + 1} of {args.rounds}:"
            f" {args.backlog:,} queued for big, {args.small} for small"
        )
        run = {
            "label": args.label,
            "backlog": args.backlog,
            "small": args.small,
            **one_round(args.backlog, args.small),
        }
        print(json.dumps(run), flush=True)
        runs.append(run)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(saved + runs, indent=2) + "\n")
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
    print(json.dumps({"label": args.label, "median": medians}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
