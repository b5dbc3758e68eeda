"""``memtasks jobs list|show|retry|cancel`` and ``memtasks requeue``."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from memtasks.cli.common import emit_json, fail, out, plain, state, when
from memtasks.domain.errors import UnknownJobKind
from memtasks.domain.jobs import JobKind, JobStatus
from memtasks.services.admin import JobsAdmin

app = typer.Typer(help="Inspect and act on single jobs.", no_args_is_help=True)


def _admin(ctx: typer.Context) -> JobsAdmin:
    return JobsAdmin(state(ctx).runtime)


def _status(value: str | None) -> JobStatus | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        fail(f"unknown status {value!r}", f"use one of {', '.join(s.value for s in JobStatus)}")


def _kind(value: str | None) -> JobKind | None:
    if value is None:
        return None
    try:
        return JobKind.parse(value)
    except UnknownJobKind:
        fail(f"unknown job kind {value!r}", f"use one of {', '.join(k.value for k in JobKind)}")


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", "-s", help="ready, running, done, failed or cancelled"
    ),
    kind: str | None = typer.Option(None, "--kind", "-k", help="a memory-tree job kind"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The newest memory-tree jobs first."""
    jobs = _admin(ctx).list_mem_tree(status=_status(status), kind=_kind(kind), limit=limit)
    if as_json:
        emit_json(jobs)
        return
    table = Table()
    for column in ("id", "kind", "status", "attempts", "created", "error"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.id,
            job.kind,
            job.status.value,
            f"{job.attempts}/{job.max_attempts}",
            when(job.created_at_ms),
            (job.last_error or "")[:60],
        )
    out.print(table)
    out.print(f"{len(jobs)} jobs", markup=False)


@app.command("show")
def show(ctx: typer.Context, job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every field of one job (memory-tree ``job:…`` or decay ``dj_…``)."""
    record: Any = _admin(ctx).show(job_id)
    if record is None:
        fail(f"no job {job_id!r}", "list jobs with `memtasks jobs list`")
    if as_json:
        emit_json(record)
        return
    for key, value in plain(record).items():
        out.print(f"{key:>20}: {value}", markup=False)


@app.command("retry")
def retry(ctx: typer.Context, job_id: str) -> None:
    """Put a failed job back to ready with fresh attempts."""
    job = _admin(ctx).retry(job_id)
    out.print(f"{job.id} is ready again (attempts reset); a dispatch sweep publishes it", markup=False)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job that has not started (ready memory-tree job, pending decay job)."""
    admin = _admin(ctx)
    if admin.is_decay(job_id) and admin.show(job_id) is None:
        fail(f"no job {job_id!r}", "list jobs with `memtasks jobs list`")
    if not admin.cancel(job_id):
        fail(f"job {job_id} has already started or finished: only waiting jobs can be cancelled")
    out.print(f"{job_id} cancelled", markup=False)


def requeue(
    ctx: typer.Context,
    transient_only: bool = typer.Option(
        False, "--transient-only", help="leave unrecoverable failures (bad input) failed"
    ),
) -> None:
    """Failed jobs (memory-tree and decay) back to ready with fresh attempts."""
    count = _admin(ctx).requeue_failed(transient_only=transient_only)
    out.print(f"{count} failed jobs requeued{' (transient only)' if transient_only else ''}", markup=False)
