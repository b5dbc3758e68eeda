"""``python -m bench.chaos [--jobs N] [--seed S] [--duration SECONDS] [--out PATH]``

Exit status: 0 when every check holds, 1 when one fails (each is printed), 2 when the
machine lacks what the suite needs (the missing piece is named).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from bench.chaos.run import SetupError, run
from bench.chaos.settings import DEFAULT_OUT, ChaosSettings

SHOWN = (
    "jobs",
    "terminal",
    "lost",
    "unplanned_failed",
    "planned_failed",
    "double_effects",
    "double_followups",
    "decay_jobs",
    "decay_completed",
    "decay_failed",
    "decay_retried",
    "faults",
    "faults_without_work_in_flight",
    "executions",
    "retries",
    "fenced_late_settles",
    "recoveries",
    "max_recovery_s",
    "max_recovery_raw_s",
    "recoveries_restarted_by_outage",
    "recovery_bound_s",
    "terminal_rows_changed",
    "max_attempts_used",
    "pg_mode",
    "seed",
    "run_s",
    "duration_s",
)


def parse(argv: list[str] | None = None) -> ChaosSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to enqueue (default 10,000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the workload and faults")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds over which the jobs are enqueued (default: jobs/40)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"figures as JSON (default {DEFAULT_OUT})"
    )
    parser.add_argument("--logs", type=Path, default=None, help="copy the run's logs to this directory")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    parser.add_argument("--pg", choices=("auto", "private", "shared"), default="auto", help="PostgreSQL mode")
    parser.add_argument("--fault-gap", type=float, default=8.0, help="seconds between scheduled faults")
    args = parser.parse_args(argv)
    if args.jobs < 100 or args.workers < 2 or args.concurrency < 1:
        parser.error("a run needs at least 100 jobs and 2 workers")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    return ChaosSettings(
        jobs=args.jobs,
        seed=seed,
        duration_s=args.duration if args.duration is not None else args.jobs / 40,
        out=args.out,
        logs=args.logs,
        workers=args.workers,
        concurrency=args.concurrency,
        pg_mode=args.pg,
        fault_gap_s=args.fault_gap,
    )


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def report(figures: dict[str, Any]) -> None:
    print("\nchaos figures:")
    for key in SHOWN:
        if key in figures:
            value = figures[key]
            shown = json.dumps(value) if isinstance(value, dict) else value
            print(f"  {key:<22} {shown}")
    if figures.get("violations"):
        print("\nFAILED:")
        for line in figures["violations"]:
            print(f"  - {line}")
    else:
        print("\nevery check holds")


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        figures = run(settings)
    except SetupError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chaos: interrupted; everything the run started was stopped", file=sys.stderr)
        return 130
    report(figures)
    print(f"figures saved to {settings.out}")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
