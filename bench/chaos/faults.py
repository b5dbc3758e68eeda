"""The fault driver: every fault type once on a schedule (in a seeded order), then random faults
(seeded types and gaps) until the producer has enqueued every job. One fault at a time, and
the fleet is whole again before the next: at least one worker always runs.

| fault | what happens |
| --- | --- |
| ``kill_child`` | ``kill -9`` of a pool process (scheduled: the one running a slow bait job) |
| ``kill_worker`` | ``kill -9`` of a whole worker (main and pool processes); restarted after 1 s |
| ``redis_restart`` | the private Redis stops (its data goes) and starts again 1.5 s later |
| ``redis_flushall`` | ``FLUSHALL`` on the private Redis: queued and unacknowledged messages, locks |
| ``pg_restart`` | the private PostgreSQL (fsync on) crashes — ``SIGKILL`` of the postmaster |
|  | and every backend — and restarts 1 s later through crash recovery |
| ``pg_terminate`` | every connection to the run's database is terminated |
| ``sigstop`` | a worker is paused past its lease (scheduled: while it runs a bait job) and |
|  | resumed once another worker took that job over: its late settle must be fenced |
| ``two_beats`` | a second ``celery beat`` runs next to the first for a while |
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Engine, text

from bench.chaos.executions import ExecLog, Execution
from bench.chaos.fleet import ChaosFleet
from bench.chaos.postgres_server import Database, PrivatePostgres
from bench.chaos.procs import Deadline, wait_until
from bench.chaos.redis_server import PrivateRedis
from bench.chaos.settings import FAULT_TYPES, ChaosSettings
from bench.chaos.workload import Enqueuer, PlannedJob, bait

AIMED_BY_BAIT = frozenset({"kill_child", "sigstop"})
"""Scheduled, these wait for a worker to run a slow bait job and strike that worker."""
INFRA = frozenset({"redis_restart", "redis_flushall", "pg_restart", "pg_terminate"})
FENCED_LINE = "lost its lease; its writes were rolled back"
AIM_TIMEOUT_S = 60.0
"""How long a fault waits for work in flight before it fires anyway (and the run fails)."""

IN_FLIGHT_SQL = (
    "SELECT"
    " (SELECT count(*) FROM mem_tree_jobs WHERE status = 'ready'),"
    " (SELECT count(*) FROM mem_tree_jobs WHERE status = 'running'),"
    " (SELECT count(*) FROM decay_jobs WHERE state = 'pending'),"
    " (SELECT count(*) FROM decay_jobs WHERE state = 'in_progress')"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class FaultRecord:
    type: str
    scheduled: bool
    started_ms: int
    ended_ms: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def infra(self) -> bool:
        return self.type in INFRA

    @property
    def hit_work(self) -> bool:
        """Jobs were running or messages unacknowledged when the fault fired."""
        hit = self.detail.get("hit", {})
        return bool(hit.get("running", 0) or hit.get("unacked", 0))

    def as_json(self, t0_ms: int) -> dict[str, Any]:
        return {
            "type": self.type,
            "scheduled": self.scheduled,
            "at_s": round((self.started_ms - t0_ms) / 1000, 2),
            "duration_s": round((self.ended_ms - self.started_ms) / 1000, 2),
            **self.detail,
        }


@dataclass
class FaultDriver:
    settings: ChaosSettings
    fleet: ChaosFleet
    redis: PrivateRedis
    database: Database
    enqueuer: Enqueuer
    exec_log: ExecLog
    engine: Engine
    rng: random.Random
    t0_ms: int
    next_bait: int
    records: list[FaultRecord] = field(default_factory=list)
    baits: list[PlannedJob] = field(default_factory=list)

    @property
    def types(self) -> tuple[str, ...]:
        if isinstance(self.database, PrivatePostgres):
            return FAULT_TYPES
        return tuple(t for t in FAULT_TYPES if t != "pg_restart")

    # ── the schedule ─────────────────────────────────────────────────────────

    def run(self, producing: Callable[[], bool]) -> None:
        """Every type once (seeded order), then random faults while ``producing()``."""
        order = list(self.types)
        self.rng.shuffle(order)
        self._pause(self.settings.warmup_s)
        for kind in order:
            self.inject(kind, scheduled=True)
            self._pause(self.settings.fault_gap_s)
        while producing():
            self._pause(self.rng.uniform(1.0, 2.5) * self.settings.fault_gap_s, producing)
            if producing():
                self.inject(self.rng.choice(self.types), scheduled=False)

    def _pause(self, seconds: float, producing: Callable[[], bool] | None = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and (producing is None or producing()):
            time.sleep(0.1)

    def inject(self, kind: str, *, scheduled: bool) -> FaultRecord:
        record = FaultRecord(kind, scheduled, now_ms())
        if kind not in AIMED_BY_BAIT or not scheduled:
            self.aim(record)
        getattr(self, f"_{kind}")(record)
        record.ended_ms = now_ms()
        self.records.append(record)
        self._say(record)
        self.stabilise()
        return record

    # ── aiming: every fault strikes while work is in flight ──────────────────

    def in_flight(self) -> dict[str, int]:
        """Ready and running rows of both tables, and the broker's queued and unacknowledged
        messages, now."""
        with self.engine.connect() as conn:
            ready, running, decay_ready, decay_running = conn.execute(text(IN_FLIGHT_SQL)).one()
        client = self.redis.client()
        try:
            unacked = int(cast(int, client.hlen("unacked")))
            queued = sum(
                int(cast(int, client.llen(q))) for q in ("critical", "default", "bulk", "llm", "maintenance")
            )
        finally:
            client.close()
        return {
            "ready": int(ready) + int(decay_ready),
            "running": int(running) + int(decay_running),
            "unacked": unacked,
            "queued": queued,
        }

    def aim(self, record: FaultRecord) -> None:
        """Wait until jobs run or messages are unacknowledged, then fix the fault's start
        there; what it hit goes into the record. No work within :data:`AIM_TIMEOUT_S`: the
        fault fires anyway, marked, and the checker fails the run."""
        deadline = time.monotonic() + AIM_TIMEOUT_S
        while True:
            hit = self.in_flight()
            if hit["running"] or hit["unacked"] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        record.started_ms = now_ms()
        record.detail["hit"] = hit

    def _say(self, record: FaultRecord) -> None:
        at = (record.started_ms - self.t0_ms) / 1000
        took = (record.ended_ms - record.started_ms) / 1000
        detail = " ".join(f"{k}={v}" for k, v in record.detail.items() if k not in {"pids", "token", "hit"})
        hit = record.detail.get("hit", {})
        detail = f"hit running={hit.get('running')} unacked={hit.get('unacked')} {detail}"
        how = "scheduled" if record.scheduled else "random"
        print(f"[{at:7.1f}s] {record.type:<15} {how:<9} {took:5.1f}s  {detail}", flush=True)

    def stabilise(self) -> None:
        """Wait until every worker runs with its full pool and both servers answer."""

        def whole() -> bool:
            client = self.redis.client()
            try:
                client.ping()
            finally:
                client.close()
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return all(self.fleet.healthy(name) for name in self.fleet.workers)

        wait_until(whole, 90, "the fleet whole again after a fault", interval=0.1)

    # ── helpers ──────────────────────────────────────────────────────────────

    def _bait_run(self, slow_ms: int) -> Execution:
        """Enqueue a slow bait job and wait until a worker runs it; its execution."""
        job = bait(self.next_bait, slow_ms)
        self.next_bait += 1
        self.baits.append(job)
        self.enqueuer.enqueue([job])
        found: list[Execution] = []

        def started() -> bool:
            self.exec_log.refresh()
            found.extend(self.exec_log.by_n(job.n))
            return bool(found)

        wait_until(started, 60, f"a worker running bait job {job.n}", interval=0.02)
        return found[0]

    def _owner(self, pid: int) -> str:
        for name in self.fleet.workers:
            if pid in self.fleet.children(name):
                return name
        raise Deadline(f"no worker owns pool process {pid}")

    def _row(self, job_id: str) -> tuple[str, str | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT status, lease_token FROM mem_tree_jobs WHERE id = :id"), {"id": job_id}
            ).one()
        return str(row[0]), row[1]

    # ── the faults ───────────────────────────────────────────────────────────

    def _kill_child(self, record: FaultRecord) -> None:
        if record.scheduled:
            run = self._bait_run(slow_ms=2_500)
            worker, pid = self._owner(run.pid), run.pid
            record.detail.update(job=run.job, token=run.token, hit=self.in_flight())
            record.started_ms = now_ms()
        else:
            worker = self.rng.choice(sorted(self.fleet.workers))
            pid = self.rng.choice(self.fleet.children(worker))
        self.fleet.kill_child(worker, pid)
        record.detail.update(worker=worker, pid=pid, pids=[pid])

    def _kill_worker(self, record: FaultRecord) -> None:
        worker = self.rng.choice(sorted(self.fleet.workers))
        pids = self.fleet.kill_worker(worker)
        time.sleep(1.0)
        self.fleet.start_worker(worker)
        record.detail.update(worker=worker, pids=pids)

    def _redis_restart(self, record: FaultRecord) -> None:
        self.redis.restart(down_s=1.5)

    def _redis_flushall(self, record: FaultRecord) -> None:
        self.redis.flushall()

    def _pg_restart(self, record: FaultRecord) -> None:
        assert isinstance(self.database, PrivatePostgres)
        record.detail.update(self.database.crash_restart(down_s=1.0))

    def _pg_terminate(self, record: FaultRecord) -> None:
        record.detail["terminated"] = self.database.terminate_backends()

    def _sigstop(self, record: FaultRecord) -> None:
        if not record.scheduled:
            worker = self.rng.choice(sorted(self.fleet.workers))
            pids = self.fleet.pause(worker)
            try:
                time.sleep(self.settings.lease_s + 3 * self.settings.sweep_s)
            finally:
                self.fleet.resume(worker)
            record.detail.update(worker=worker, pids=pids)
            return
        run = self._bait_run(slow_ms=3_000)
        worker = self._owner(run.pid)
        record.detail["hit"] = self.in_flight()
        record.started_ms = now_ms()
        offset = self.fleet.log_size(worker)
        pids = self.fleet.pause(worker)
        paused = time.monotonic()
        record.detail.update(worker=worker, pids=pids, job=run.job, token=run.token)
        held = self._row(run.job) == ("running", run.token)

        def taken_over() -> bool:
            status, token = self._row(run.job)
            return status == "done" or (status == "running" and token != run.token)

        limit = self.settings.lease_s + self.settings.sweep_s + 60
        try:
            wait_until(taken_over, limit, f"bait job {run.job} taken over from paused {worker}", 0.05)
        finally:
            self.fleet.resume(worker)
        record.detail["paused_s"] = round(time.monotonic() - paused, 2)

        def fenced() -> bool:
            return f"job {run.job} {FENCED_LINE}" in self.fleet.log(worker, offset)

        try:
            wait_until(fenced, 30, f"the late settle of {run.job} fenced")
            record.detail["late_settle"] = "fenced"
        except Deadline:
            record.detail["late_settle"] = "not seen"
        record.detail["held_when_paused"] = held

    def _two_beats(self, record: FaultRecord) -> None:
        self.fleet.start_beat("beat2")
        time.sleep(8.0)
        self.fleet.stop_beat("beat2")
