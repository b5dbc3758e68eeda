"""The claim and enqueue paths' speed, for comparing two trees of the code (before and after a
change to the queue core): the same harness parts as ``bench.run`` (``bench.harness.systems``),
fewer rounds, no peers.

Per round: a drain of ``--per-job`` jobs sent one message each (``MEMTASKS_DRAIN_BATCH=0``:
each job claimed by id), a drain of ``--batched`` jobs with the default adaptive batching (the
batched claim), and the enqueue of rows one at a time (2,000) and in batches of 1,000. Run it from
each tree's root in turn (``python -m bench.claim_speed --label NAME``, this file copied to the
other tree); results are appended to that tree's ``bench/results/claim_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.harness.systems import ROOT, Memtasks, memtasks_run, reset_databases, say

RESULTS = ROOT / "bench" / "results" / "claim_speed.json"


def one_round(per_job: int, batched: int) -> dict[str, float]:
    single = memtasks_run("memtasks per job", per_job, "noop", {"DRAIN_BATCH": "0"})
    drained = memtasks_run("memtasks batched", batched, "noop", {})
    client = Memtasks("memtasks enqueue", "noop", {})
    try:
        one, many = client.enqueue_rates(batched)
    finally:
        client.close()
    return {
        "per_job_drain_per_s": single.drain,
        "batched_drain_per_s": drained.drain,
        "enqueue_single_per_s": one,
        "enqueue_batch_per_s": many,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-job", type=int, default=5_000)
    parser.add_argument("--batched", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--label", required=True)
    args = parser.parse_args(argv)
    runs = []
    for n in range(args.rounds):
        reset_databases()
        say(f"{args.label}: round {n + 1} of {args.rounds}")
        run = {"label": args.label, **one_round(args.per_job, args.batched)}
        print(json.dumps(run), flush=True)
        runs.append(run)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(saved + runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
