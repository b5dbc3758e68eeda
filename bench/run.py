"""memtasks benchmarks: every system in every round, rounds interleaved, medians with spread.

    python -m bench.run [--quick] [--rounds R] [--jobs N] [--results DIR] [--only PART ...]

Each round runs every system of the comparison (bare Celery, memtasks in each mode,
Procrastinate, pgqueuer) on the same N jobs with 2 worker processes, the same handler (a
true no-op; then one row written per job) and the same completion detector, in an order that
rotates from round to round. A figure reports the median and the lowest and highest round;
a ratio is taken round by round; a target is met only when every round meets it
(``bench.harness.stats``). Systems that batch are compared with peers batching the same:
memtasks drains of 500 and of 10 next to pgqueuer at ``--batch-size`` 500 and 10 and bare
Celery carrying 500 and 10 jobs per message.

A system that cannot run fails the whole run (exit 2) and leaves ``latest.*`` as they were;
so does a partial run (``--only``), which saves ``partial-<time>.json``. Otherwise writes
``latest.json``, ``latest.md``, ``latest.png``, ``readme_table.md`` and a timestamped copy.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import singles
from bench.harness.report import Figure, cpu_count, save
from bench.harness.stats import at_least, at_most
from bench.harness.systems import (
    PROCESSES,
    Run,
    SystemFailed,
    bare_run,
    memtasks_enqueue,
    memtasks_run,
    peer_run,
    reset_databases,
    say,
    versions,
)

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", Path(__file__).resolve().parent / "results"))
BATCH = 500
"""Jobs per drain message in the batched comparisons; every batching peer runs at it too."""
SMALL_BATCH = 10
"""pgqueuer's default batch: the second batched comparison."""
PER_JOB = {"DRAIN_BATCH": "0"}
ADAPTIVE: dict[str, str] = {}
"""memtasks' default settings: adaptive batching."""


def batched(size: int) -> dict[str, str]:
    return {"DRAIN_BATCH": str(size), "DRAIN_THRESHOLD": "1"}


@dataclass(frozen=True)
class Step:
    key: str
    run: Callable[[], Run]


def plan(n: int, scale_s: float, scale_backlog: int) -> list[Step]:
    """Everything one round runs; keys name a system and what it ran."""
    steps = [
        Step("bare per-job noop", lambda: bare_run("bare Celery", n, "noop", None, end_to_end=True)),
        Step(f"bare chunk{BATCH} noop", lambda: bare_run("bare Celery chunked", n, "noop", BATCH)),
        Step(
            f"bare chunk{SMALL_BATCH} noop", lambda: bare_run("bare Celery chunked", n, "noop", SMALL_BATCH)
        ),
        Step("bare per-job write", lambda: bare_run("bare Celery", n, "write", None)),
        Step(f"bare chunk{BATCH} write", lambda: bare_run("bare Celery chunked", n, "write", BATCH)),
        Step(
            "memtasks per-job noop",
            lambda: memtasks_run("memtasks per-job", n, "noop", PER_JOB, end_to_end=True),
        ),
        Step(
            "memtasks adaptive noop",
            lambda: memtasks_run("memtasks adaptive", n, "noop", ADAPTIVE, end_to_end=True),
        ),
        Step(
            f"memtasks batch{BATCH} noop", lambda: memtasks_run("memtasks batched", n, "noop", batched(BATCH))
        ),
        Step(
            f"memtasks batch{SMALL_BATCH} noop",
            lambda: memtasks_run("memtasks batched", n, "noop", batched(SMALL_BATCH)),
        ),
        Step("memtasks per-job write", lambda: memtasks_run("memtasks per-job", n, "write", PER_JOB)),
        Step("memtasks adaptive write", lambda: memtasks_run("memtasks adaptive", n, "write", ADAPTIVE)),
        Step(
            f"memtasks batch{BATCH} write",
            lambda: memtasks_run("memtasks batched", n, "write", batched(BATCH)),
        ),
        Step("memtasks enqueue", lambda: memtasks_enqueue(n)),
        Step("procrastinate noop", lambda: peer_run("procrastinate", n, "noop", end_to_end=True)),
        Step("procrastinate write", lambda: peer_run("procrastinate", n, "write")),
        Step(
            f"pgqueuer{SMALL_BATCH} noop",
            lambda: peer_run("pgqueuer", n, "noop", worker_batch=SMALL_BATCH, end_to_end=True),
        ),
        Step(f"pgqueuer{BATCH} noop", lambda: peer_run("pgqueuer", n, "noop", worker_batch=BATCH)),
        Step(f"pgqueuer{BATCH} write", lambda: peer_run("pgqueuer", n, "write", worker_batch=BATCH)),
        Step("claimers 4", lambda: Run(drain=singles.claimers(4, scale_s, scale_backlog))),
        Step("claimers 16", lambda: Run(drain=singles.claimers(16, scale_s, scale_backlog))),
    ]
    return steps


def measure(steps: Sequence[Step], rounds: int) -> dict[str, list[Run]]:
    """Every step in every round; round r starts r steps further along the list."""
    found: dict[str, list[Run]] = {step.key: [] for step in steps}
    for r in range(rounds):
        shift = (r * max(1, len(steps) // rounds)) % len(steps)
        for step in [*steps[shift:], *steps[:shift]]:
            say(f"round {r + 1}/{rounds}: {step.key}")
            run = step.run()
            found[step.key].append(run)
            say(f"  → {run}")
    return found


def throughput(
    found: dict[str, list[Run]], name: str, systems: dict[str, str], end_to_end: bool = False
) -> Figure:
    figure = Figure(name, "jobs/s")
    for label, key in systems.items():
        runs = found[key]
        figure.values[label] = [r.end_to_end if end_to_end else r.drain for r in runs]  # type: ignore[misc]
    return figure


def compare(source: Figure, name: str, top: str, bottom: str, target: float) -> Figure:
    made = Figure(name, source.unit, {top: source.values[top], bottom: source.values[bottom]}, (top, bottom))
    made.target = at_least(target, f"≥ {target:g}×")
    return made


def figures_of(found: dict[str, list[Run]]) -> list[Figure]:
    b, s = BATCH, SMALL_BATCH
    one = throughput(
        found,
        "drain, no-op handler, one message per job",
        {
            "bare Celery": "bare per-job noop",
            "memtasks per-job": "memtasks per-job noop",
            "procrastinate": "procrastinate noop",
        },
    )
    big = throughput(
        found,
        f"drain, no-op handler, {b} jobs per message or fetch",
        {
            f"memtasks batched {b}": f"memtasks batch{b} noop",
            "memtasks adaptive (default)": "memtasks adaptive noop",
            f"pgqueuer batch {b}": f"pgqueuer{b} noop",
            f"bare Celery chunks of {b}": f"bare chunk{b} noop",
        },
    )
    small = throughput(
        found,
        f"drain, no-op handler, {s} jobs per message or fetch",
        {
            f"memtasks batched {s}": f"memtasks batch{s} noop",
            f"pgqueuer batch {s}": f"pgqueuer{s} noop",
            f"bare Celery chunks of {s}": f"bare chunk{s} noop",
        },
    )
    write_one = throughput(
        found,
        "drain, one row written per job, one message per job",
        {
            "bare Celery": "bare per-job write",
            "memtasks per-job": "memtasks per-job write",
            "procrastinate": "procrastinate write",
        },
    )
    write_big = throughput(
        found,
        f"drain, one row written per job, {b} jobs per message or fetch",
        {
            f"memtasks batched {b}": f"memtasks batch{b} write",
            "memtasks adaptive (default)": "memtasks adaptive write",
            f"pgqueuer batch {b}": f"pgqueuer{b} write",
            f"bare Celery chunks of {b}": f"bare chunk{b} write",
        },
    )
    e2e = throughput(
        found,
        "end to end (idle workers, then N jobs enqueued), no-op handler",
        {
            "bare Celery": "bare per-job noop",
            "memtasks per-job": "memtasks per-job noop",
            "memtasks adaptive (default)": "memtasks adaptive noop",
            "procrastinate": "procrastinate noop",
            f"pgqueuer batch {s}": f"pgqueuer{s} noop",
        },
        end_to_end=True,
    )
    enqueue_keys = {
        "memtasks": "memtasks enqueue",
        "procrastinate": "procrastinate noop",
        "pgqueuer": f"pgqueuer{s} noop",
    }
    single = Figure("enqueue one job at a time", "jobs/s")
    batch = Figure("enqueue in batches of 1,000", "jobs/s")
    for label, key in enqueue_keys.items():
        single.values[label] = [r.enqueue_single or math.nan for r in found[key]]
        batch.values[label] = [r.enqueue_batch or math.nan for r in found[key]]
    scale = Figure(
        "claims settled per second, PostgreSQL, one job per claim",
        "jobs/s",
        {
            "4 claimers": [r.drain for r in found["claimers 4"]],
            "16 claimers": [r.drain for r in found["claimers 16"]],
        },
        ("16 claimers", "4 claimers"),
        at_least(0.8, "16 ≥ 0.8× 4"),
    )
    return [
        one,
        compare(one, "memtasks per-job ÷ procrastinate (no-op)", "memtasks per-job", "procrastinate", 1.0),
        compare(one, "memtasks per-job ÷ bare Celery (no-op)", "memtasks per-job", "bare Celery", 0.6),
        big,
        compare(
            big,
            f"memtasks batched {b} ÷ pgqueuer batch {b}",
            f"memtasks batched {b}",
            f"pgqueuer batch {b}",
            1.0,
        ),
        compare(
            big,
            "memtasks adaptive ÷ memtasks batched",
            "memtasks adaptive (default)",
            f"memtasks batched {b}",
            0.9,
        ),
        compare(
            big,
            f"memtasks adaptive ÷ pgqueuer batch {b}",
            "memtasks adaptive (default)",
            f"pgqueuer batch {b}",
            1.0,
        ),
        small,
        compare(
            small,
            f"memtasks batched {s} ÷ pgqueuer batch {s}",
            f"memtasks batched {s}",
            f"pgqueuer batch {s}",
            1.0,
        ),
        write_one,
        compare(
            write_one, "memtasks per-job ÷ procrastinate (write)", "memtasks per-job", "procrastinate", 1.0
        ),
        write_big,
        compare(
            write_big,
            f"memtasks batched {b} ÷ pgqueuer batch {b} (write)",
            f"memtasks batched {b}",
            f"pgqueuer batch {b}",
            1.0,
        ),
        e2e,
        single,
        batch,
        compare(batch, "memtasks batched enqueue ÷ pgqueuer", "memtasks", "pgqueuer", 1.0),
        scale,
    ]


def single_figures(quick: bool) -> list[Figure]:
    """memtasks alone, measured once (each value a percentile over many claims or jobs)."""
    made: list[Figure] = []
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    claims = 300 if quick else 1_000
    for grow in ("done", "ready"):
        found = singles.claim_cost(sizes, claims, grow=grow)
        for size, (p50, p99) in found.items():
            made.append(Figure(f"claim+settle at {size:,} {grow} rows: p50", "ms", {"memtasks": [p50]}))
            made.append(Figure(f"claim+settle at {size:,} {grow} rows: p99", "ms", {"memtasks": [p99]}))
        small, large = min(sizes), max(sizes)
        growth = Figure(
            f"claim p50 at {large:,} ÷ at {small:,} {grow} rows",
            "×",
            {"memtasks": [found[large][0] / found[small][0]]},
            target=at_most(1.5, "≤ 1.5×"),
        )
        made.append(growth)
    made[0].target = at_most(1.0, "≤ 1.0 ms")
    lat = singles.latency(100 if quick else 300)
    made.append(
        Figure(
            "enqueue → start p50, idle fleet, default settings",
            "ms",
            {"memtasks": [lat["start p50"]]},
            target=at_most(10, "≤ 10 ms"),
        )
    )
    for key in ("start p95", "start p99", "done p50", "done p95"):
        made.append(Figure(f"enqueue → {key}", "ms", {"memtasks": [lat[key]]}))
    messages = 100_000 if quick else 1_000_000
    # Archived (the default) and deleted at once, alternated: the archive's cost side by side.
    rounds: dict[str, list[dict[str, float]]] = {"archived": [], "deleted": []}
    for _ in range(1 if quick else 2):
        rounds["archived"].append(singles.consolidation(messages))
        rounds["deleted"].append(singles.consolidation(messages, archive_grace_days=0))
    for how, runs in rounds.items():
        made.append(
            Figure(f"prune {messages:,} messages, {how}", "s", {"memtasks": [r["seconds"] for r in runs]})
        )
        made.append(
            Figure(
                f"writer worst wait during the prune, {how}",
                "ms",
                {"memtasks": [r["writer worst"] for r in runs]},
                target=at_most(100, "≤ 100 ms"),
            )
        )
    log = singles.logger(20_000 if quick else 100_000)
    made.append(Figure("logger log() p99", "µs", {"memtasks": [log["p99"]]}, target=at_most(10, "≤ 10 µs")))
    made.append(
        Figure(
            "logger flush to PostgreSQL",
            "records/s",
            {"memtasks": [log["flush"]]},
            target=at_least(20_000, "≥ 20,000/s"),
        )
    )
    return made


NOTES = {
    "drain": (
        "N jobs enqueued first (untimed, then ANALYZE); clock from the first poll (every 50 ms) that"
        " sees a job done to the poll that sees all N done: the jobs done after that first poll, over"
        " that time. Worker start-up is left out for every system alike."
    ),
    "end to end": (
        "workers started and answering, then 1 s idle; clock from the first enqueue (batches of"
        " 1,000) to the last job done."
    ),
    "done": (
        "memtasks: none ready or running and N done in mem_tree_jobs; bare Celery: its queue's list"
        " and the unacked hash empty (late acks); procrastinate: none todo/doing and N succeeded;"
        " pgqueuer: its queue table empty and N successful in its log. With the write handler, also"
        " N rows in bench_effects."
    ),
    "handlers": (
        "no-op: a function that returns. write: one INSERT into bench_effects — memtasks through"
        " ctx.conn in the job's transaction (committed with its settle); bare Celery autocommit per"
        " task (chunked: one transaction per message); procrastinate and pgqueuer on a connection of"
        " their worker, outside the statement that settles the job."
    ),
    "settings": (
        "2 worker processes each. memtasks and bare Celery: late acks, one prefetch, JSON, task"
        " events off (memtasks' default; Flower turns them on while it watches); memtasks' workers"
        " consume its five queues, bare Celery one. procrastinate: concurrency 1 (its default)."
        " pgqueuer: --batch-size 10 (its default) and 500. memtasks per-job: MEMTASKS_DRAIN_BATCH=0;"
        " batched B: DRAIN_BATCH=B, DRAIN_THRESHOLD=1; adaptive: the default settings."
    ),
    "enqueue": (
        "rows only (no message), into an emptied table: 2,000 jobs one call each; N jobs in calls of 1,000."
    ),
    "claimers": (
        "processes each claiming one job at a time (claim_next + settle_done) from one ready"
        " backlog for a fixed time, started together."
    ),
    "single figures": (
        "claim cost, latency, consolidation and the logger are memtasks alone, measured once per"
        " run; each value is a percentile over many claims or jobs."
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 jobs per run, smaller single figures")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds (every system in each), at least 3 for a full run"
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (default 10,000; quick 2,000)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the figures go")
    parser.add_argument("--only", nargs="*", default=None, help="rounds singles")
    args = parser.parse_args(argv)
    n = args.jobs or (2_000 if args.quick else 10_000)
    only = set(args.only or ["rounds", "singles"])
    if args.rounds < 3 and args.only is None:
        parser.error("a full run needs at least 3 rounds")
    started = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        reset_databases()
        figures: list[Figure] = []
        if "rounds" in only:
            steps = plan(n, 3.0 if args.quick else 5.0, 50_000 if args.quick else 200_000)
            figures += figures_of(measure(steps, args.rounds))
        if "singles" in only:
            figures += single_figures(args.quick)
    except SystemFailed as exc:
        say(f"FAILED — {exc}. Nothing saved: latest.* are as they were.")
        return 2
    meta = {
        "at": started,
        "quick": args.quick,
        "cpus": cpu_count(),
        "rounds": args.rounds,
        "jobs": n,
        "processes": PROCESSES,
        "versions": versions(),
        "notes": NOTES,
    }
    saved = save(args.results, figures, meta, partial=args.only is not None)
    say(f"saved {saved}")
    for f in figures:
        met = f.met()
        print(
            f"{f.name}: "
            + "; ".join(f"{k} {sorted(v)[len(v) // 2]:,.2f}" for k, v in f.values.items())
            + ("" if met is None else (" (met)" if met else " (MISSED)"))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
