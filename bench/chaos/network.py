"""The partition scenario: a worker host cut off from Redis and PostgreSQL while it holds row
locks, then healed (``python -m bench.chaos.network``; part of ``make chaos``).

On the fleet of :mod:`bench.chaos.network_fleet` (two worker hosts behind relays, a beat and a
producer on this host, which is never cut), host ``a`` runs two bait ``seal`` jobs that
lock the buffer rows of trees ``hot0`` and ``hot1`` and hold them; host ``b`` starts, a steady
stream of short ``seal`` jobs flows (half on those trees, which need those locks), and host
``a`` is cut off for
``cut_s`` seconds, then healed. Measured, from the job rows (the database's clock):

- ``stranded_done_after_cut_s``: when the last bait job was finished by host ``b`` — the goal
  is before the heal: the lost host's transactions are ended by the server
  (``idle_in_transaction_session_timeout``), their leases recovered, its locks released;
- ``healthy_longest_idle_s``: the longest stretch during the cut in which host ``b`` finished
  no job (goal ≤ 2 s): it never waits on the lost host's locks longer than ``lock_timeout``;
- ``healed_host_back_s``: from the heal to host ``a``'s first finished job (goal ≤ 30 s,
  without a restart);
- nothing lost, no effect twice, host ``a``'s late settles fenced.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.chaos.network_fleet import FleetShape, NetFleet, host_of, start_fleet
from bench.chaos.procs import wait_until
from bench.chaos.settings import DEFAULT_OUT
from bench.chaos.stream import SteadyStream

FENCED_MARKERS = (
    "lost its lease; its writes were rolled back",
    "after losing its lease",
    "met a lock after losing",
)


@dataclass(frozen=True, slots=True)
class PartitionSettings:
    cut_s: float = 20.0
    lease_s: float = 6.0
    sweep_s: float = 1.0
    hold_s: float = 25.0
    stream_per_s: float = 20.0
    healed_within_s: float = 30.0
    healthy_idle_max_s: float = 2.0
    seed: int = 0
    bounded: bool = True
    """False: the sessions' lock and idle-in-transaction bounds off (as before they existed),
    for comparison."""


def stream_job(n: int) -> Any:
    """A short seal job; half of them on the two trees whose buffers the bait jobs lock
    (``hot0``, ``hot1``)."""
    from memtasks.domain.jobs import JobKind, NewJob

    return NewJob(JobKind.SEAL, {"tree_id": f"hot{n % 4}" if n % 4 < 2 else f"t{n % 40}", "level": 0, "n": n})


def run_partition(settings: PartitionSettings, root: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        shape = FleetShape(
            lease_s=settings.lease_s,
            sweep_s=settings.sweep_s,
            seed=settings.seed,
            env={
                # Longer than the cut: the cut-off host learns of it only after the heal, and
                # then tries to settle its stranded jobs late — the fence must hold.
                "MEMTASKS_DB_DEAD_PEER_S": str(settings.cut_s + 15),
                **(
                    {}
                    if settings.bounded
                    else {
                        "MEMTASKS_DB_LOCK_TIMEOUT_S": "1000000",
                        "MEMTASKS_DB_IDLE_IN_TRANSACTION_S": "1000000",
                    }
                ),
            },
        )
        return _run(settings, start_fleet(root, stack, shape), stack)
    raise AssertionError("unreachable")


def _run(settings: PartitionSettings, fleet: NetFleet, stack: ExitStack) -> dict[str, Any]:
    from memtasks.domain.jobs import JobKind, NewJob

    producer = fleet.producer
    fleet.start_worker("a")
    baits = [
        producer.enqueue(NewJob(JobKind.SEAL, {"tree_id": f"hot{i}", "level": 0, "hold_s": settings.hold_s}))
        for i in range(2)
    ]

    def baits_running_on_a() -> bool:
        """Both baits running on host a for a second and more (holding their locks, not
        waiting for one)."""
        now = fleet.now_ms()
        rows = {r["id"]: r for r in fleet.rows()}
        return all(
            rows[b]["status"] == "running"
            and host_of(rows[b]) == "host-a"
            and now - int(rows[b]["started_at_ms"]) > 1_000
            for b in baits
        )

    wait_until(baits_running_on_a, 60, "both bait jobs running on host a")
    fleet.start_worker("b")
    stream = SteadyStream(producer.enqueue_many, stream_job, settings.stream_per_s, "stream")
    stream.start()
    stack.callback(stream.stop.set)
    wait_until(
        lambda: any(host_of(r) == "host-b" and r["status"] == "done" for r in fleet.rows()),
        60,
        "host b at work",
    )
    time.sleep(2.0)  # a steady state before the cut
    if not baits_running_on_a():
        raise RuntimeError("the bait jobs stopped running on host a before the cut")

    cut_ms = fleet.now_ms()
    fleet.hosts["a"].cut()
    try:
        end_at = time.monotonic() + settings.cut_s
        while time.monotonic() < end_at:
            time.sleep(0.1)
    finally:
        fleet.hosts["a"].heal()
    heal_ms = fleet.now_ms()

    def a_back() -> bool:
        return any(
            host_of(r) == "host-a" and r["status"] == "done" and int(r["completed_at_ms"]) > heal_ms
            for r in fleet.rows()
        )

    back_deadline = settings.healed_within_s + 30
    with contextlib.suppress(Exception):
        wait_until(a_back, back_deadline, "host a at work again")
    stream.finish()
    with contextlib.suppress(Exception):
        wait_until(lambda: all(r["status"] == "done" for r in fleet.rows()), 120, "every job done")

    rows = fleet.rows()
    with fleet.engine.connect() as conn:
        tokens = {r[0]: r[1] for r in conn.execute(text("SELECT job_id, lease_token FROM chaos_effects"))}
        history = {
            r[0]: r[1]
            for r in conn.execute(
                text("SELECT id, attempt_history FROM mem_tree_jobs WHERE id = ANY(:ids)"), {"ids": baits}
            )
        }
    by_id = {r["id"]: r for r in rows}
    bait_rows = [by_id[b] for b in baits]
    b_done = sorted(
        int(r["completed_at_ms"])
        for r in rows
        if host_of(r) == "host-b" and r["status"] == "done" and cut_ms <= int(r["completed_at_ms"]) <= heal_ms
    )
    marks = [cut_ms, *b_done, heal_ms]
    a_after = [
        int(r["completed_at_ms"])
        for r in rows
        if host_of(r) == "host-a" and r["status"] == "done" and int(r["completed_at_ms"]) > heal_ms
    ]
    log_a = fleet.workers["a"].text()
    figures: dict[str, Any] = {
        "settings": asdict(settings),
        **fleet.outcome(rows),
        "stranded_jobs": len(baits),
        "stranded_finished_by": sorted({host_of(r) for r in bait_rows}),
        "stranded_done_after_cut_s": round(
            (max(int(r["completed_at_ms"] or 0) for r in bait_rows) - cut_ms) / 1000, 2
        ),
        "stranded_done_before_heal": all(
            r["status"] == "done" and int(r["completed_at_ms"]) < heal_ms for r in bait_rows
        ),
        "cut_s": round((heal_ms - cut_ms) / 1000, 2),
        "healthy_jobs_during_cut": len(b_done),
        "healthy_longest_idle_s": round(max(b - a for a, b in itertools.pairwise(marks)) / 1000, 2),
        "healed_host_back_s": round((min(a_after) - heal_ms) / 1000, 2) if a_after else None,
        "late_settles_fenced": sum(log_a.count(m) for m in FENCED_MARKERS),
        "stranded_effects_from_host_b": all(tokens.get(b) is not None for b in baits)
        and all(host_of(by_id[b]) == "host-b" for b in baits),
        "stranded_history": {
            b: [(e["outcome"], e["worker"]) for e in json.loads(history[b] or "[]")] for b in baits
        },
        "lock_waits_stepped_aside": sum(w.text().count("met a row lock") for w in fleet.workers.values()),
    }
    figures["ok"] = bool(
        figures["lost"] == 0
        and figures["double_effects"] == 0
        and figures["done_without_effect"] == 0
        and figures["stranded_done_before_heal"]
        and figures["stranded_finished_by"] == ["host-b"]
        and figures["healed_host_back_s"] is not None
        and figures["healed_host_back_s"] <= settings.healed_within_s
        and figures["late_settles_fenced"] >= 1
        and figures["stranded_effects_from_host_b"]
        and figures["healthy_longest_idle_s"] <= settings.healthy_idle_max_s
    )
    return figures


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="memtasks-net-"))
    try:
        yield root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def save(figures: dict[str, Any], out: Path, name: str = "partition") -> None:
    """Under ``network.<name>`` in ``out``, keeping the file's other keys."""
    current = json.loads(out.read_text()) if out.exists() else {}
    current.setdefault("network", {})[name] = figures
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(current, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos.network", description=__doc__.split("\n")[0])
    parser.add_argument("--cut", type=float, default=20.0, help="seconds host a is cut off (default 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file; figures go under 'network'")
    parser.add_argument("--logs", type=Path, default=None, help="copy the run's logs here")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="turn the sessions' lock and idle-in-transaction bounds off, for comparison (saved as"
        " 'partition_unbounded')",
    )
    args = parser.parse_args(argv)
    with run_directory() as root:
        try:
            figures = run_partition(PartitionSettings(cut_s=args.cut, bounded=not args.unbounded), root)
        finally:
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for path in root.glob("*.log"):
                    (args.logs / path.name).write_bytes(path.read_bytes())
    for key, value in figures.items():
        print(f"  {key:<28} {value}")
    save(figures, args.out, "partition_unbounded" if args.unbounded else "partition")
    if args.unbounded:
        print("partition without the session bounds: figures saved for comparison")
        return 0
    print("partition: " + ("every check holds" if figures["ok"] else "FAILED"))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
