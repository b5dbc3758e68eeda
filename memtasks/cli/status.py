"""``memtasks status``: the queue at a glance (``--json`` for scripts)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.table import Table

from memtasks.cli.common import JSON_HELP, age, emit_json, out, state, when
from memtasks.metrics import STATUSES
from memtasks.services.job_view import iso
from memtasks.services.status import StatusReport, status_report
from memtasks.worker.routing import queue_of


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Jobs by queue, kind and status; oldest wait; expired leases; failures; sweeps (read-only)."""
    s = state(ctx)
    report = status_report(s.reader.engine, s.reader.jobs.clock)
    if as_json:
        emit_json(as_dict(report, s.settings.tree_uses_llm))
        return
    render(report, s.settings.tree_uses_llm)


def as_dict(report: StatusReport, tree_uses_llm: bool) -> dict[str, Any]:
    return {
        "now": iso(report.now_ms),
        "now_ms": report.now_ms,
        "jobs": [
            {
                "queue": queue_of(k.kind, tree_uses_llm=tree_uses_llm),
                "kind": k.kind,
                **{status: k.by_status.get(status, 0) for status in STATUSES},
                "oldest_ready_age_ms": k.oldest_ready_age_ms,
                "expired_leases": k.expired_leases,
                "waiting_retry": k.waiting_retry,
                "failed_by_class": k.failed_by_class,
            }
            for k in report.queue.kinds
        ],
        "decay": report.queue.decay_by_state,
        "decay_expired_leases": report.queue.decay_expired_leases,
        "last_consolidation": report.last_consolidation,
        "consolidation_runs": report.consolidation_runs_by_outcome,
        "sweeps": report.sweeps,
        "retrieval_failures": {
            "total": report.retrieval_failures_total,
            "last_24h": report.retrieval_failures_last_24h,
        },
        "summaries_by_level": report.summaries_by_level,
        "lanes": [asdict(lane) for lane in report.queue.lanes],
        "storage": None
        if report.storage is None
        else {
            "autovacuum": report.storage.autovacuum,
            "warning": report.storage.warning,
            "tables": [
                {
                    "table": t.table,
                    "bytes": t.bytes,
                    "live_rows": t.live_rows,
                    "dead_rows": t.dead_rows,
                    "last_vacuum": iso(t.last_vacuum_ms) if t.last_vacuum_ms is not None else None,
                }
                for t in report.storage.tables
            ],
        },
    }


def render(report: StatusReport, tree_uses_llm: bool) -> None:
    jobs = Table(title="memory-tree jobs", title_justify="left")
    for column in ("queue", "kind", *STATUSES, "oldest ready", "expired", "retrying", "failures by class"):
        jobs.add_column(
            column, justify="left" if column in {"queue", "kind", "failures by class"} else "right"
        )
    rows = sorted(report.queue.kinds, key=lambda k: (queue_of(k.kind, tree_uses_llm=tree_uses_llm), k.kind))
    for k in rows:
        jobs.add_row(
            queue_of(k.kind, tree_uses_llm=tree_uses_llm),
            k.kind,
            *(str(k.by_status.get(s, 0)) for s in STATUSES),
            age(k.oldest_ready_age_ms),
            str(k.expired_leases),
            str(k.waiting_retry),
            ", ".join(f"{c} {n}" for c, n in sorted(k.failed_by_class.items())) or "—",
        )
    if not rows:
        jobs.add_row("—", "no jobs", *["0"] * len(STATUSES), "—", "0", "0", "—")
    out.print(jobs)
    if len(report.queue.lanes) > 1 or any(lane.lane for lane in report.queue.lanes):
        lanes = Table(title="fair-share lanes (ready memory-tree jobs, largest first)", title_justify="left")
        for column in ("lane", "ready", "due", "oldest due"):
            lanes.add_column(column, justify="left" if column == "lane" else "right")
        for lane in report.queue.lanes:
            lanes.add_row(
                lane.lane or "(shared)", str(lane.ready), str(lane.due), age(lane.oldest_due_age_ms)
            )
        out.print(lanes)
    decay = ", ".join(f"{state} {n}" for state, n in sorted(report.queue.decay_by_state.items())) or "none"
    out.print(f"decay jobs: {decay}; expired leases {report.queue.decay_expired_leases}", markup=False)
    last = report.last_consolidation
    if last is None:
        out.print("last consolidation: never", markup=False)
    else:
        out.print(
            f"last consolidation: {last.outcome.value} at {when(last.started_at_ms)} "
            f"({last.messages_pruned} messages, {last.outcomes_pruned} outcomes pruned)",
            markup=False,
        )
    out.print(
        f"retrieval failures: {report.retrieval_failures_total} stored, "
        f"{report.retrieval_failures_last_24h} in the last 24 h",
        markup=False,
    )
    if report.sweeps:
        sweeps = Table(title="sweeps", title_justify="left")
        for column in ("sweep", "last run", "outcome", "detail"):
            sweeps.add_column(column)
        for record in report.sweeps:
            sweeps.add_row(
                record.name, when(record.started_at_ms), record.outcome, (record.detail or "")[:60]
            )
        out.print(sweeps)
    if report.storage is not None:
        for t in report.storage.tables:
            out.print(
                f"{t.table}: {t.bytes / 1e6:.1f} MB on disk, {t.live_rows} live rows, {t.dead_rows} dead,"
                f" last vacuum {when(t.last_vacuum_ms) if t.last_vacuum_ms is not None else 'never'}",
                markup=False,
            )
        if report.storage.warning is not None:
            out.print(f"warning: {report.storage.warning}", markup=False, style="yellow")
