"""The verdict of a run, from the job rows, the effect rows, the execution logs, what the
observer saw and the fault log.

Checks (each failure is a line in ``violations``):

- every job is terminal — done, or failed with a reason; ``lost`` counts planned jobs with
  no row, rows that never finished and follow-ups that never appeared;
- ``failed`` only as planned: every chaos job is meant to succeed except those the workload
  plans to fail for good (``fail_always``; decay jobs missing a source), which must end
  ``failed`` as unrecoverable — any other failed row is a violation;
- decay jobs: each completed one produced exactly one summary (its supersession edges carry
  its id), a failed one none, a flaky one completed on a later attempt;
- no effect twice: ``chaos_effects`` grouped by job has no count above one, and no job
  enqueued its follow-up twice; a done job has exactly one effect, an unfinished one none;
- at-least-once: every effect comes from a recorded execution (executions ≥ effects);
- attempts never exceed the job's maximum;
- no finished row changed afterwards (the observer's snapshots, and one after the fleet stopped);
- every expired lease was taken over within lease + sweep interval + tolerance of its last
  renewal; when a Redis or PostgreSQL fault happened in between, the clock starts when that
  server was back;
- every fault type was injected, each struck while jobs were running or messages were
  unacknowledged (what it hit is in the fault log), and the scheduled pause ended with the
  paused worker's late settle fenced.

Takeover times are reported twice: ``max_recovery_raw_s`` from the lost lease's last renewal
to the takeover, whatever happened meanwhile, and ``max_recovery_s`` with the clock restarted
at the end of a Redis or PostgreSQL outage that overlapped it (the bound applies to this one).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from bench.chaos.decay_work import PlannedDecay
from bench.chaos.executions import Execution
from bench.chaos.faults import FENCED_LINE, FaultRecord
from bench.chaos.observer import ExpiredLease, TerminalChange
from bench.chaos.settings import ChaosSettings
from bench.chaos.workload import PlannedJob

TERMINAL = ("done", "failed", "cancelled")
KILLING_FAULTS = ("kill_child", "kill_worker", "sigstop")


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    started_at_ms: int | None
    completed_at_ms: int | None
    failure_reason: str | None
    last_error: str | None
    dedupe_key: str | None
    payload: dict[str, Any]
    failure_class: str | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    job: str
    lost_token: str
    expiry_ms: int
    reclaimed_ms: int
    clock_start_ms: int
    lease_ms: int

    @property
    def seconds(self) -> float:
        return (self.reclaimed_ms - self.clock_start_ms) / 1000

    @property
    def raw_seconds(self) -> float:
        """From the lost lease's last renewal to the takeover, outages included."""
        return (self.reclaimed_ms - (self.expiry_ms - self.lease_ms)) / 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "seconds": round(self.seconds, 2),
            "raw_seconds": round(self.raw_seconds, 2),
            "after_expiry_s": round((self.reclaimed_ms - self.expiry_ms) / 1000, 2),
            "clock_started_at_outage_end": self.clock_start_ms > self.expiry_ms - self.lease_ms,
        }


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything the run collected."""

    settings: ChaosSettings
    planned: Sequence[PlannedJob]
    executions: Sequence[Execution]
    expired: Sequence[ExpiredLease]
    changes: Sequence[TerminalChange]
    snapshots: int
    faults: Sequence[FaultRecord]
    fault_types: Sequence[str]
    worker_logs: dict[str, str]
    planned_decay: Sequence[PlannedDecay] = ()


def load_rows(engine: Engine) -> list[Row]:
    query = text(
        "SELECT id, kind, status, attempts, max_attempts, started_at_ms, completed_at_ms, "
        "failure_reason, last_error, dedupe_key, payload_json, failure_class FROM mem_tree_jobs"
    )
    with engine.connect() as conn:
        return [
            Row(
                id=r.id,
                kind=r.kind,
                status=r.status,
                attempts=r.attempts,
                max_attempts=r.max_attempts,
                started_at_ms=r.started_at_ms,
                completed_at_ms=r.completed_at_ms,
                failure_reason=r.failure_reason,
                last_error=r.last_error,
                dedupe_key=r.dedupe_key,
                payload=json.loads(r.payload_json),
                failure_class=r.failure_class,
            )
            for r in conn.execute(query)
        ]


def load_effects(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text("SELECT job_id, lease_token FROM chaos_effects"))]


def count_double_effects(engine: Engine) -> int:
    query = text(
        "SELECT count(*) FROM (SELECT job_id FROM chaos_effects GROUP BY job_id HAVING count(*) > 1) d"
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


class Checker:
    def __init__(self, engine: Engine, evidence: Evidence) -> None:
        self.engine = engine
        self.ev = evidence
        self.violations: list[str] = []
        self.figures: dict[str, Any] = {}

    def fail(self, what: str, items: Sequence[object] = ()) -> None:
        sample = f" (e.g. {', '.join(map(str, items[:5]))})" if items else ""
        self.violations.append(f"{what}{sample}")

    def check(self) -> dict[str, Any]:
        rows = load_rows(self.engine)
        effects = load_effects(self.engine)
        by_id = {row.id: row for row in rows}
        effects_of: dict[str, list[str | None]] = defaultdict(list)
        for job_id, token in effects:
            effects_of[job_id].append(token)
        execs_of: dict[str, list[Execution]] = defaultdict(list)
        for e in sorted(self.ev.executions, key=lambda e: (e.claimed_at, e.at)):
            execs_of[e.job].append(e)

        lost = self._terminal(rows) + self._planned(rows) + self._followups(rows, by_id)
        unplanned_failed = self._failed(rows)
        decay = self._decay()
        self._effects(rows, effects_of, execs_of)
        self._attempts(rows)
        self._changes()
        recoveries = self._recoveries(by_id, effects_of, execs_of)
        self._faults()

        status = Counter(row.status for row in rows)
        executed = len(execs_of)
        bound = self.ev.settings.recovery_bound_s
        self.figures.update(
            jobs=len(rows),
            planned=len(self.ev.planned),
            followups=sum(1 for row in rows if "chaos_parent" in row.payload),
            terminal=sum(status[s] for s in TERMINAL),
            done=status["done"],
            failed=status["failed"],
            lost=lost + decay["decay_lost"],
            unplanned_failed=unplanned_failed + decay["decay_unplanned_failed"],
            planned_failed=sum(1 for r in rows if r.status == "failed" and r.payload.get("fail_always")),
            double_effects=count_double_effects(self.engine) + decay["decay_double_effects"],
            effects=len(effects),
            executions=len(self.ev.executions),
            retries=len(self.ev.executions) - executed,
            max_attempts_used=max((row.attempts for row in rows), default=0),
            fenced_late_settles=sum(log.count(FENCED_LINE) for log in self.ev.worker_logs.values()),
            recoveries=len(recoveries),
            max_recovery_s=round(max((r.seconds for r in recoveries), default=0.0), 2),
            max_recovery_raw_s=round(max((r.raw_seconds for r in recoveries), default=0.0), 2),
            recoveries_restarted_by_outage=sum(1 for r in recoveries if r.seconds < r.raw_seconds),
            recovery_bound_s=bound,
            recovery_log=[r.as_json() for r in sorted(recoveries, key=lambda r: -r.seconds)],
            terminal_snapshots=self.ev.snapshots,
            terminal_rows_changed=len(self.ev.changes),
            faults=dict(sorted(Counter(f.type for f in self.ev.faults).items())),
            faults_without_work_in_flight=sum(1 for f in self.ev.faults if not f.hit_work),
            **decay,
        )
        self.figures["ok"] = not self.violations
        self.figures["violations"] = self.violations
        return self.figures

    # ── the checks ───────────────────────────────────────────────────────────

    def _terminal(self, rows: Sequence[Row]) -> int:
        unfinished = [f"{r.id} {r.status}" for r in rows if r.status not in TERMINAL]
        if unfinished:
            self.fail(f"{len(unfinished)} jobs never finished", unfinished)
        unexplained = [r.id for r in rows if r.status == "failed" and not (r.failure_reason or r.last_error)]
        if unexplained:
            self.fail(f"{len(unexplained)} failed jobs carry no reason", unexplained)
        return len(unfinished)

    def _failed(self, rows: Sequence[Row]) -> int:
        """Failed rows the workload did not plan, and planned failures that ended otherwise."""
        unplanned = [
            f"{r.id} {r.failure_reason or r.last_error}"
            for r in rows
            if r.status == "failed" and not r.payload.get("fail_always")
        ]
        if unplanned:
            self.fail(f"{len(unplanned)} jobs failed that were meant to succeed", unplanned)
        wrong = [
            f"{r.id} {r.status}/{r.failure_class}"
            for r in rows
            if r.payload.get("fail_always") and (r.status != "failed" or r.failure_class != "unrecoverable")
        ]
        if wrong:
            self.fail(f"{len(wrong)} planned failures did not end failed as unrecoverable", wrong)
        return len(unplanned)

    def _decay(self) -> dict[str, int]:
        """The decay jobs: every planned one stored and finished as planned, one effect at most."""
        planned = {job.job_id: job for job in self.ev.planned_decay}
        with self.engine.connect() as conn:
            rows = {
                r.id: r
                for r in conn.execute(
                    text(
                        "SELECT id, state, attempts, max_attempts, failure_class, state_reason"
                        " FROM decay_jobs"
                    )
                )
            }
            summaries: Counter[str] = Counter()
            for job_id, count in conn.execute(
                text(
                    "SELECT decay_job_id, count(DISTINCT summary_id) FROM supersessions"
                    " WHERE decay_job_id IS NOT NULL GROUP BY decay_job_id"
                )
            ):
                summaries[str(job_id)] = int(count)
        missing = [job_id for job_id in planned if job_id not in rows]
        unfinished = [
            f"{i} {r.state}" for i, r in rows.items() if r.state not in ("completed", "failed", "cancelled")
        ]
        unplanned = [
            f"{i} {r.state_reason}"
            for i, r in rows.items()
            if r.state == "failed" and not planned[i].planned_failure
        ]
        wrong = [
            f"{i} {rows[i].state}/{rows[i].failure_class}"
            for i, job in planned.items()
            if job.planned_failure
            and i in rows
            and (rows[i].state != "failed" or rows[i].failure_class != "unrecoverable")
        ]
        doubled = [i for i, n in summaries.items() if n > 1]
        no_effect = [i for i, r in rows.items() if r.state == "completed" and summaries[i] != 1]
        stray = [i for i, r in rows.items() if r.state != "completed" and summaries[i]]
        flaky_once = [
            i for i, job in planned.items() if job.plan == "flaky" and i in rows and rows[i].attempts < 2
        ]
        over = [i for i, r in rows.items() if r.attempts > r.max_attempts]
        for what, items in (
            ("planned decay jobs have no row", missing),
            ("decay jobs never finished", unfinished),
            ("decay jobs failed that were meant to succeed", unplanned),
            ("planned decay failures did not end failed as unrecoverable", wrong),
            ("decay jobs produced more than one summary", doubled),
            ("completed decay jobs have no single summary", no_effect),
            ("unfinished or failed decay jobs have a summary", stray),
            ("flaky decay jobs did not fail their first attempt", flaky_once),
            ("decay jobs ran more attempts than allowed", over),
        ):
            if items:
                self.fail(f"{len(items)} {what}", items)
        states = Counter(r.state for r in rows.values())
        return {
            "decay_jobs": len(rows),
            "decay_completed": states["completed"],
            "decay_failed": states["failed"],
            "decay_planned_failures": sum(1 for job in planned.values() if job.planned_failure),
            "decay_flaky": sum(1 for job in planned.values() if job.plan == "flaky"),
            "decay_retried": sum(1 for r in rows.values() if r.attempts > 1),
            "decay_lost": len(missing) + len(unfinished),
            "decay_unplanned_failed": len(unplanned),
            "decay_double_effects": len(doubled),
        }

    def _planned(self, rows: Sequence[Row]) -> int:
        keys = Counter(row.dedupe_key for row in rows if row.dedupe_key)
        missing = [job.n for job in self.ev.planned if keys[job.dedupe_key] == 0]
        twice = [key for key, n in keys.items() if n > 1]
        if missing:
            self.fail(f"{len(missing)} enqueued jobs have no row", missing)
        if twice:
            self.fail(f"{len(twice)} jobs were inserted twice", twice)
        return len(missing)

    def _followups(self, rows: Sequence[Row], by_id: dict[str, Row]) -> int:
        children: Counter[str] = Counter(
            row.payload["chaos_parent"] for row in rows if "chaos_parent" in row.payload
        )
        parents = [r for r in rows if r.payload.get("followup") and r.status == "done"]
        missing = [p.id for p in parents if children[p.id] == 0]
        doubled = [p.id for p in parents if children[p.id] > 1]
        orphans = [c for c in children if c not in by_id or by_id[c].status != "done"]
        if missing:
            self.fail(f"{len(missing)} done jobs lost their follow-up", missing)
        if doubled:
            self.fail(f"{len(doubled)} jobs enqueued their follow-up twice", doubled)
        if orphans:
            self.fail(f"{len(orphans)} follow-ups of jobs that did not finish", orphans)
        self.figures["double_followups"] = len(doubled)
        return len(missing)

    def _effects(
        self,
        rows: Sequence[Row],
        effects_of: dict[str, list[str | None]],
        execs_of: dict[str, list[Execution]],
    ) -> None:
        doubled = [job for job, tokens in effects_of.items() if len(tokens) > 1]
        missing = [r.id for r in rows if r.status == "done" and not effects_of.get(r.id)]
        stray = [r.id for r in rows if r.status != "done" and effects_of.get(r.id)]
        unrecorded = [
            job
            for job, tokens in effects_of.items()
            if any(t not in {e.token for e in execs_of.get(job, [])} for t in tokens)
        ]
        if doubled:
            self.fail(f"{len(doubled)} jobs have more than one effect", doubled)
        if missing:
            self.fail(f"{len(missing)} done jobs have no effect", missing)
        if stray:
            self.fail(f"{len(stray)} unfinished or failed jobs have an effect", stray)
        if unrecorded:
            self.fail(f"{len(unrecorded)} effects come from no recorded execution", unrecorded)

    def _attempts(self, rows: Sequence[Row]) -> None:
        over = [f"{r.id} {r.attempts}/{r.max_attempts}" for r in rows if r.attempts > r.max_attempts]
        if over:
            self.fail(f"{len(over)} jobs ran more attempts than allowed", over)

    def _changes(self) -> None:
        if self.ev.changes:
            self.fail(
                f"{len(self.ev.changes)} finished rows changed afterwards",
                [f"{c.job_id}: {c.before} → {c.after}" for c in self.ev.changes],
            )

    def _faults(self) -> None:
        seen = {f.type for f in self.ev.faults}
        absent = [t for t in self.ev.fault_types if t not in seen]
        if absent:
            self.fail(f"fault types never injected: {', '.join(absent)}")
        idle = [f"{f.type}@{f.started_ms}" for f in self.ev.faults if not f.hit_work]
        if idle:
            self.fail(f"{len(idle)} faults struck while no job ran and no message was unacknowledged", idle)
        for f in self.ev.faults:
            if f.type == "sigstop" and f.scheduled and f.detail.get("late_settle") != "fenced":
                self.fail(f"the paused worker's late settle of {f.detail.get('job')} was not seen fenced")

    # ── recovery times ───────────────────────────────────────────────────────

    def _recoveries(
        self,
        by_id: dict[str, Row],
        effects_of: dict[str, list[str | None]],
        execs_of: dict[str, list[Execution]],
    ) -> list[Recovery]:
        lease_ms = int(self.ev.settings.lease_s * 1000)
        winner = {job: tokens[0] for job, tokens in effects_of.items() if tokens}
        lost: dict[tuple[str, str], int] = {
            (e.job_id, e.token): e.expiry_ms for e in self.ev.expired if winner.get(e.job_id) != e.token
        }
        for job, token, expiry in self._held_by_stopped_processes(execs_of):
            if winner.get(job) != token:
                lost.setdefault((job, token), expiry)
        windows = [(f.started_ms, f.ended_ms) for f in self.ev.faults if f.infra]
        recoveries: list[Recovery] = []
        unrecovered: list[str] = []
        for (job, token), expiry in sorted(lost.items()):
            claimed = next(
                (e.claimed_at for e in execs_of.get(job, []) if e.token == token), expiry - lease_ms
            )
            later = [
                e.claimed_at for e in execs_of.get(job, []) if e.claimed_at > claimed and e.token != token
            ]
            row = by_id.get(job)
            if not later and row is not None and row.status == "failed" and row.completed_at_ms:
                later = [row.completed_at_ms]  # recovered as failed: its attempts were spent
            if not later:
                unrecovered.append(job)
                continue
            reclaimed = min(later)
            start = expiry - lease_ms
            for begun, ended in windows:
                if begun <= reclaimed and ended >= start:
                    start = max(start, ended)
            recoveries.append(Recovery(job, token, expiry, reclaimed, start, lease_ms))
        if unrecovered:
            self.fail(f"{len(unrecovered)} expired leases were never taken over", unrecovered)
        bound = self.ev.settings.recovery_bound_s
        slow = [f"{r.job} {r.seconds:.1f}s" for r in recoveries if r.seconds > bound]
        if slow:
            self.fail(f"{len(slow)} expired leases taken over later than {bound:.1f} s", slow)
        return recoveries

    def _held_by_stopped_processes(self, execs_of: dict[str, list[Execution]]) -> list[tuple[str, str, int]]:
        """The execution each killed or paused process was in (or had last run) when the
        fault hit it; a planned first-attempt failure is a retry, not a lost lease."""
        by_pid: dict[int, list[Execution]] = defaultdict(list)
        for runs in execs_of.values():
            for e in runs:
                by_pid[e.pid].append(e)
        planned_failures = {job.n for job in self.ev.planned if job.payload.get("fail_first")}
        held: list[tuple[str, str, int]] = []
        for fault in self.ev.faults:
            if fault.type not in KILLING_FAULTS:
                continue
            for pid in fault.detail.get("pids", ()):
                before = [e for e in by_pid.get(pid, []) if e.at <= fault.started_ms]
                if not before:
                    continue
                e = max(before, key=lambda e: e.at)
                if not (e.attempt == 1 and e.n in planned_failures):
                    held.append((e.job, e.token, e.locked_until))
        return held
