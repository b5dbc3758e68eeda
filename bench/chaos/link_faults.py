"""The slow link and the silent broker connection (``python -m bench.chaos.link_faults``; part
of ``make chaos``).

On the fleet of :mod:`bench.chaos.network_fleet`, host ``a`` reaches Redis and PostgreSQL through
:mod:`bench.chaos.link_relay` while a steady stream of short ``seal`` jobs flows to both hosts:

- **slow link**: host ``a``'s link is +200 ms per round trip (100 ms each way) for ``slow_s``,
  then fast again. Host ``a`` keeps working through it — slower, with no lease lost to the
  delay, no job run twice — and at full pace once the link is fast;
- **silent broker**: every connection host ``a`` holds to Redis stops answering without closing
  (its bytes dropped, none written, nothing closed: the peers' kernels see a healthy
  connection). Bare Celery's consumer waits on such a connection for ever and the message a
  BRPOP popped is in nobody's hands; memtasks' workers give up on it
  (``MEMTASKS_BROKER_SOCKET_TIMEOUT_S``, ``MEMTASKS_BROKER_HEALTH_CHECK_S``) and reconnect, and
  the rows bring back what the dead connection swallowed. Measured: from the silence to host
  ``a``'s first finished job that was enqueued after it — a message that could only reach it
  through a new connection (goal ≤ 30 s, without a restart).

Both: nothing lost, no effect twice, every job done.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.chaos.network import run_directory, save
from bench.chaos.network_fleet import FleetShape, NetFleet, host_of, start_fleet
from bench.chaos.procs import wait_until
from bench.chaos.settings import DEFAULT_OUT
from bench.chaos.stream import SteadyStream

LEASE_LOST_MARKERS = ("lost its lease", "after losing its lease", "met a lock after losing")


def stream_job(n: int) -> Any:
    from memtasks.domain.jobs import JobKind, NewJob

    return NewJob(JobKind.SEAL, {"tree_id": f"t{n % 40}", "level": 0, "n": n})


@dataclass(frozen=True, slots=True)
class SlowSettings:
    slow_s: float = 30.0
    after_s: float = 15.0
    delay_ms: float = 100.0
    """Each way: +2× per round trip."""
    lease_s: float = 6.0
    stream_per_s: float = 20.0


@dataclass(frozen=True, slots=True)
class SilentSettings:
    watch_s: float = 45.0
    lease_s: float = 6.0
    stream_per_s: float = 20.0
    back_within_s: float = 30.0
    timeouts: bool = True
    """False: the broker timeouts off (as before they existed), for comparison."""


def _steady(fleet: NetFleet, stack: ExitStack, per_s: float) -> SteadyStream:
    fleet.start_worker("a")
    fleet.start_worker("b")
    stream = SteadyStream(fleet.producer.enqueue_many, stream_job, per_s, "stream")
    stream.start()
    stack.callback(stream.stop.set)
    for name in ("a", "b"):
        wait_until(
            lambda name=name: any(  # type: ignore[misc]
                host_of(r) == f"host-{name}" and r["status"] == "done" for r in fleet.rows()
            ),
            60,
            f"host {name} at work",
        )
    return stream


def _finish(fleet: NetFleet, stream: SteadyStream) -> list[dict[str, Any]]:
    stream.finish()
    with contextlib.suppress(Exception):
        wait_until(lambda: all(r["status"] == "done" for r in fleet.rows()), 120, "every job done")
    return fleet.rows()


def _round_trip_ms(host: str, port: int) -> float:
    """A Redis ``PING`` through a relay, from this host: the link's round trip."""
    with socket.create_connection((host, port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"PING\r\n")
        sock.recv(64)
        return round((time.monotonic() - started) * 1000, 1)


def _run_ms(rows: list[dict[str, Any]], host: str, since_ms: int, until_ms: int) -> list[int]:
    return [
        int(r["completed_at_ms"]) - int(r["started_at_ms"])
        for r in rows
        if host_of(r) == host and r["status"] == "done" and since_ms <= int(r["completed_at_ms"]) < until_ms
    ]


def _median(values: list[int]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def run_slow_link(settings: SlowSettings, root: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        shape = FleetShape(lease_s=settings.lease_s, spoilable=True, delay_ms=settings.delay_ms)
        fleet = start_fleet(root, stack, shape)
        relay = fleet.relays["a"]["redis"]
        slow_rtt = _round_trip_ms(relay.listen_host, relay.port)
        fast_rtt = _round_trip_ms(fleet.relays["b"]["redis"].listen_host, fleet.relays["b"]["redis"].port)
        stream = _steady(fleet, stack, settings.stream_per_s)
        slow_from = fleet.now_ms()
        time.sleep(settings.slow_s)  # the fault's length: nothing to wait for
        for r in fleet.relays["a"].values():
            r.unslow()
        fast_from = fleet.now_ms()
        time.sleep(settings.after_s)
        fast_until = fleet.now_ms()
        rows = _finish(fleet, stream)
        with fleet.engine.connect() as conn:
            from sqlalchemy import text

            expired = int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM mem_tree_jobs, json_array_elements(attempt_history::json) e"
                        " WHERE e->>'outcome' = 'lease_expired'"
                    )
                ).scalar_one()
            )
        log_a = fleet.workers["a"].text()
        figures: dict[str, Any] = {
            "settings": asdict(settings),
            **fleet.outcome(rows),
            "round_trip_ms": {"slow_link": slow_rtt, "fast_link": fast_rtt},
            "slow_jobs_done": {h: len(_run_ms(rows, f"host-{h}", slow_from, fast_from)) for h in ("a", "b")},
            "slow_median_run_ms": {
                h: _median(_run_ms(rows, f"host-{h}", slow_from, fast_from)) for h in ("a", "b")
            },
            "after_jobs_done": {
                h: len(_run_ms(rows, f"host-{h}", fast_from, fast_until)) for h in ("a", "b")
            },
            "after_median_run_ms": {
                h: _median(_run_ms(rows, f"host-{h}", fast_from, fast_until)) for h in ("a", "b")
            },
            "leases_expired": expired,
            "lease_lost_warnings": sum(log_a.count(m) for m in LEASE_LOST_MARKERS),
        }
        figures["ok"] = bool(
            figures["lost"] == 0
            and figures["double_effects"] == 0
            and figures["done_without_effect"] == 0
            and slow_rtt >= 2 * settings.delay_ms
            and figures["slow_jobs_done"]["a"] > 0
            and figures["after_jobs_done"]["a"] > 0
            and expired == 0
            and figures["lease_lost_warnings"] == 0
        )
        return figures
    raise AssertionError("unreachable")


def run_silent_broker(settings: SilentSettings, root: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        env = (
            {}
            if settings.timeouts
            else {"MEMTASKS_BROKER_SOCKET_TIMEOUT_S": "0", "MEMTASKS_BROKER_HEALTH_CHECK_S": "0"}
        )
        shape = FleetShape(lease_s=settings.lease_s, spoilable=True, env=env)
        fleet = start_fleet(root, stack, shape)
        stream = _steady(fleet, stack, settings.stream_per_s)
        time.sleep(2.0)  # a steady state before the fault
        silent_ms = fleet.now_ms()
        fleet.relays["a"]["redis"].silence()

        def a_back() -> bool:
            return any(
                host_of(r) == "host-a" and r["status"] == "done" and int(r["created_at_ms"]) > silent_ms
                for r in fleet.rows()
            )

        with contextlib.suppress(Exception):
            wait_until(a_back, settings.watch_s, "host a at work again")
        watched_ms = fleet.now_ms()
        rows = _finish(fleet, stream)
        back = [
            int(r["completed_at_ms"])
            for r in rows
            if host_of(r) == "host-a" and r["status"] == "done" and int(r["created_at_ms"]) > silent_ms
        ]
        log_a = fleet.workers["a"].text()
        figures: dict[str, Any] = {
            "settings": asdict(settings),
            **fleet.outcome(rows),
            "silenced_host_back_s": round((min(back) - silent_ms) / 1000, 2) if back else None,
            "watched_s": round((watched_ms - silent_ms) / 1000, 2),
            "healthy_jobs_while_watched": len(_run_ms(rows, "host-b", silent_ms, watched_ms)),
            "stale_connection_dropped": log_a.count("dropping stale connection")
            + log_a.count("Connection to broker lost"),
        }
        figures["ok"] = bool(
            figures["lost"] == 0
            and figures["double_effects"] == 0
            and figures["done_without_effect"] == 0
            and figures["silenced_host_back_s"] is not None
            and figures["silenced_host_back_s"] <= settings.back_within_s
            and figures["healthy_jobs_while_watched"] > 0
        )
        return figures
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos.link_faults", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", choices=("slow", "silent"), default=None, help="one scenario only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file; figures under 'network'")
    parser.add_argument("--logs", type=Path, default=None, help="copy each run's logs here")
    parser.add_argument(
        "--without-broker-timeouts",
        action="store_true",
        help="the silent broker with the broker timeouts left to the libraries, for comparison"
        " (saved as 'silent_broker_untimed')",
    )
    args = parser.parse_args(argv)
    ok = True
    runs: list[tuple[str, Any]] = []
    if args.only in (None, "slow") and not args.without_broker_timeouts:
        runs.append(("slow_link", lambda root: run_slow_link(SlowSettings(), root)))
    if args.only in (None, "silent"):
        timed = not args.without_broker_timeouts
        name = "silent_broker" if timed else "silent_broker_untimed"
        # Untimed, watched longer: whether the host ever comes back.
        silent = SilentSettings(timeouts=timed, watch_s=45.0 if timed else 120.0)
        runs.append((name, lambda root: run_silent_broker(silent, root)))
    for name, run in runs:
        with run_directory() as root:
            try:
                figures = run(root)
            finally:
                if args.logs is not None:
                    (args.logs / name).mkdir(parents=True, exist_ok=True)
                    for path in root.glob("*.log"):
                        (args.logs / name / path.name).write_bytes(path.read_bytes())
        for key, value in figures.items():
            print(f"  {key:<28} {value}")
        save(figures, args.out, name)
        if name.endswith("_untimed"):
            print(f"{name}: figures saved for comparison")
            continue
        print(f"{name}: " + ("every check holds" if figures["ok"] else "FAILED"))
        ok = ok and figures["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
