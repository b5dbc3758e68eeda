"""The main job: migrate, start a local fleet, drive a synthetic agent, report, stop everything.

``make run`` (``memtasks demo``) on a fresh machine: SQLite at the default location, a
private Redis when none answers at ``MEMTASKS_BROKER_URL``, one worker per queue plus
beat. ``make fleet`` (``memtasks demo --keep``) leaves the fleet running with Flower until
Ctrl-C.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from memtasks.config import Settings, load_settings
from memtasks.demo import report as reports
from memtasks.demo import workload
from memtasks.demo.fleet import WORKER_GROUPS, LocalFleet, redis_answers
from memtasks.domain.clock import system_clock
from memtasks.producer import Producer
from memtasks.storage.engine import EngineOptions, get_engine, mask_url
from memtasks.storage.memory_tables import consolidation_runs
from memtasks.storage.migrate import upgrade
from memtasks.storage.rows import reading
from memtasks.worker.routing import queue_of

DEMO_SETTINGS = {
    # Fast sweeps and permissive gates, so a few minutes show every kind of work.
    "MEMTASKS_BEAT_INTERVALS": json.dumps(
        {"dispatch_due": 1, "recover": 5, "flush_stale": 0.5, "consolidate": 5, "self_heal": 30}
    ),
    "MEMTASKS_TREE_STALE_AFTER_S": "1",
    "MEMTASKS_CONSOLIDATE_MIN_HOURS": "0",
    "MEMTASKS_CONSOLIDATE_MIN_SESSIONS": "1",
    "MEMTASKS_REDISPATCH_AFTER_S": "30",
}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    quick: bool = False
    keep: bool = False
    flower_port: int = 5555
    web_port: int = 9810
    timeout_s: float = 300.0


def _settings_env(settings: Settings, broker: str, lock: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEMO_SETTINGS)
    env.update(
        {
            "MEMTASKS_DATABASE_URL": settings.resolved_database_url,
            "MEMTASKS_BROKER_URL": broker,
            "MEMTASKS_LOCK_REDIS_URL": lock,
            "FLOWER_UNAUTHENTICATED_API": env.get("FLOWER_UNAUTHENTICATED_API", "true"),
        }
    )
    return env


def run_demo(options: DemoOptions, console: Console) -> int:
    """The whole main job; its exit status (0 when every job settled in time)."""
    base = load_settings()
    data_dir = Path(base.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"demo{uuid.uuid4().hex[:6]}"
    fleet = LocalFleet(data_dir / "fleet" / run_id)
    fleet.log_dir.mkdir(parents=True, exist_ok=True)
    status = 1
    try:
        broker, lock = base.broker_url, base.lock_redis_url
        if not redis_answers(broker):
            root = fleet.start_redis()
            broker, lock = f"{root}/0", f"{root}/1"
            console.print(f"no Redis at {mask_url(base.broker_url)}: started a private one at {root}")
        fleet.env = _settings_env(base, broker, lock)
        os.environ.update({k: v for k, v in fleet.env.items() if k.startswith("MEMTASKS_")})
        settings = load_settings()
        engine = get_engine(settings.resolved_database_url, EngineOptions(auto_migrate=False))
        upgrade(engine)
        console.print(f"database: {mask_url(settings.resolved_database_url)} (migrated)")

        for name, queues, concurrency in WORKER_GROUPS:
            fleet.start_worker(name, queues, concurrency)
        fleet.start_beat()
        if options.keep:
            fleet.start_flower(options.flower_port)
            fleet.start_console(options.web_port)
        fleet.wait_ready()
        console.print(
            f"fleet: {len(WORKER_GROUPS)} workers ({', '.join(q for _, q, _ in WORKER_GROUPS)}) and beat; "
            f"logs in {fleet.log_dir}"
        )

        status = _drive(settings, engine, run_id, options, console)
        if options.keep:
            console.print(
                f"the fleet keeps running: Flower at http://127.0.0.1:{options.flower_port}, the console at"
                f" http://127.0.0.1:{options.web_port} — Ctrl-C stops it"
            )
            while all(p.poll() is None for p in fleet.processes.values()):
                time.sleep(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        status = 130
    finally:
        alive = fleet.stop()
        if alive:
            console.print(f"[red]still running after stop: {', '.join(alive)}[/red]")
            status = status or 1
        else:
            console.print("stopped every process this run started")
    return status


def _drive(settings: Settings, engine: Any, run_id: str, options: DemoOptions, console: Console) -> int:
    sizes = workload.Sizes.quick() if options.quick else workload.Sizes()
    started = system_clock()
    seeded = workload.Seeded(run_id, started)
    producer = Producer(settings)
    try:
        workload.seed_agent_data(engine, system_clock, run_id, sizes, seeded)
        workload.enqueue_tree_work(engine, producer, run_id, sizes, seeded)
        workload.enqueue_decay_work(engine, producer, run_id, sizes, seeded)
        logger_stats = workload.log_retrieval_failures(producer.retrieval_failure_logger(), sizes, run_id)
        console.print(
            f"agent: {sizes.conversations} conversations, {seeded.chunks} memory-tree chunks, "
            f"{len(seeded.decay_jobs)} decay jobs, {sizes.retrieval_failures} retrieval failures"
        )
        settled = _watch(engine, settings, producer, run_id, seeded, options, console)
    finally:
        producer.close()
    report = reports.build_report(engine, run_id, started, logger_stats, settings)
    report["elapsed_s"] = round((system_clock() - started) / 1000, 1)
    report["settled"] = settled
    _print_report(report, console)
    out = Path(settings.data_dir).resolve() / "demo-report.json"
    out.write_text(reports.to_json(report))
    console.print(f"report saved to {out}")
    return 0 if settled else 1


def _watch(
    engine: Any,
    settings: Settings,
    producer: Producer,
    run_id: str,
    seeded: workload.Seeded,
    options: DemoOptions,
    console: Console,
) -> bool:
    """Live progress per queue until every job of the run is finished and the trees are sealed."""
    deadline = time.monotonic() + options.timeout_s
    documents_sealed = False
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}
        while time.monotonic() < deadline:
            now = reports.progress(engine, seeded.started_at_ms)
            per_queue: dict[str, list[int]] = {}
            for kind, (done, total) in now.by_kind.items():
                queue = queue_of(kind, tree_uses_llm=settings.tree_uses_llm)
                acc = per_queue.setdefault(queue, [0, 0])
                acc[0] += done
                acc[1] += total
            per_queue["decay"] = list(now.decay)
            for queue, (done, total) in sorted(per_queue.items()):
                if queue not in tasks:
                    tasks[queue] = bars.add_task(queue, total=max(total, 1))
                bars.update(tasks[queue], completed=done, total=max(total, 1))
            if now.active == 0 and not documents_sealed and now.by_kind.get("extract_chunk", (0, 1))[0] > 0:
                # Every chunk is in the tree: the documents are finished, seal what they left.
                workload.enqueue_document_seals(producer, seeded)
                documents_sealed = True
            elif (
                now.active == 0
                and documents_sealed
                and _consolidated(engine, seeded.started_at_ms)
                and reports.trees_settled(engine, run_id)
            ):
                return True
            time.sleep(0.5)
    console.print(f"[red]not settled within {options.timeout_s:.0f} s[/red]")
    return False


def _consolidated(engine: Any, since_ms: int) -> bool:
    with reading(engine) as conn:
        count = conn.execute(
            select(func.count()).where(
                consolidation_runs.c.started_at_ms >= since_ms, consolidation_runs.c.outcome == "ran"
            )
        ).scalar_one()
    return int(count) > 0


def _print_report(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"jobs of run {report['run_id']}", title_justify="left")
    for column in ("kind", "done", "failed", "other", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, states in sorted(report["jobs"].items()):
        latency = report["latency_ms"].get(kind, {})
        other = sum(n for s, n in states.items() if s not in {"done", "failed"})
        table.add_row(
            kind,
            str(states.get("done", 0)),
            str(states.get("failed", 0)),
            str(other),
            str(latency.get("p50", "—")),
            str(latency.get("p95", "—")),
        )
    console.print(table)
    c = report["consolidation"]
    console.print(
        f"consolidation: {c['runs']} runs ({c['ran']} ran, {c['skipped']} skipped); "
        f"{c['messages_pruned']} messages and {c['outcomes_pruned']} outcomes pruned"
    )
    levels = ", ".join(f"level {lvl}: {n}" for lvl, n in report["summaries_by_level"].items()) or "none"
    console.print(f"memory-tree summaries: {levels}")
    console.print(f"decay jobs: {report['decay_jobs']}")
    r = report["retrieval_failures"]
    console.print(
        f"retrieval failures: {r['logged']} logged by the agent, {r['stored']} stored "
        f"({r['written_by_logger']} sent by the logger, {r['dropped']} dropped, {r['lost']} lost)"
    )
    if r["note"]:
        console.print(f"  {r['note']}", markup=False)
    console.print(f"settled: {report['settled']} in {report['elapsed_s']} s")
