"""``memtasks jobs list|show|retry|cancel`` and ``memtasks requeue``: jobs of both tables
(memory-tree ``job:…`` and decay ``dj_…``) alike."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.table import Table as RichTable

from memtasks.cli.common import (
    JSON_HELP,
    choice,
    completer,
    emit_json,
    enum_choice,
    fail,
    out,
    parse_age,
    relative,
    state,
    usage,
    when_and_age,
)
from memtasks.domain.jobs import FailureClass
from memtasks.services.admin import (
    AnyJob,
    JobsAdmin,
    RequeueFilter,
    Table,
    job_view,
    kinds_of,
    status_words,
    table_of_kind,
)

app = typer.Typer(help="Inspect and act on single jobs (memory-tree and decay).", no_args_is_help=True)

TABLE_HELP = "mem-tree, decay or all"
TABLES = [t.value for t in Table]
FAILURE_CLASSES = [c.value for c in FailureClass]


def _reader(ctx: typer.Context) -> JobsAdmin:
    return JobsAdmin(state(ctx).reader)


def _writer(ctx: typer.Context) -> JobsAdmin:
    return JobsAdmin(state(ctx).runtime)


def parse_table(value: str) -> Table:
    return enum_choice(value, Table, "table")


def check_kind(kind: str | None, table: Table) -> str | None:
    """A kind of ``table`` (for ``all``: of either table); otherwise exit 2 naming the kinds."""
    if kind is None:
        return None
    noun = {Table.MEM_TREE: "job kind", Table.DECAY: "decay kind", Table.ALL: "job kind"}[table]
    return choice(kind, kinds_of(table), noun)


def list_command(
    ctx: typer.Context, table: Table, status: str | None, kind: str | None, limit: int, as_json: bool
) -> None:
    if status is not None:
        choice(status, status_words(table), "status")
    check_kind(kind, table)
    admin = _reader(ctx)
    jobs = admin.list_jobs(table=table, status=status, kind=kind, limit=limit)
    now = admin.now()
    if as_json:
        emit_json({"table": table.value, "count": len(jobs), "jobs": [job_view(j) for j in jobs]})
        return
    view = RichTable()
    for column in ("id", "table", "kind", "status", "attempts", "created", "error"):
        view.add_column(column)
    for job in jobs:
        row = job_view(job)
        view.add_row(
            row["id"],
            row["table"],
            row["kind"],
            row["status"],
            f"{row['attempts']}/{row['max_attempts']}",
            relative(row["created_at_ms"], now),
            (row["error"] or "")[:60],
        )
    out.print(view)
    out.print(f"{len(jobs)} jobs", markup=False)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    table: str = typer.Option("all", "--table", "-t", help=TABLE_HELP, autocompletion=completer(TABLES)),
    status: str | None = typer.Option(
        None,
        "--status",
        "-s",
        help="a state of either table: ready/pending, running/in_progress, done/completed, failed, cancelled",
        autocompletion=completer(status_words(Table.ALL)),
    ),
    kind: str | None = typer.Option(
        None, "--kind", "-k", help="a job kind of either table", autocompletion=completer(kinds_of(Table.ALL))
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The newest jobs first, of both tables unless --table says (read-only)."""
    list_command(ctx, parse_table(table), status, kind, limit, as_json)


def show_command(ctx: typer.Context, job_id: str, as_json: bool) -> None:
    admin = _reader(ctx)
    record: AnyJob | None = admin.show(job_id)
    if record is None:
        fail(f"no job {job_id!r}", "list jobs with `memtasks jobs list`")
    view = job_view(record)
    if as_json:
        emit_json(view)
        return
    now = admin.now()
    history = view.pop("attempt_history")
    for key, value in view.items():
        if key.endswith("_ms") and key != "last_backoff_ms":
            continue  # shown with its readable twin below
        if f"{key}_ms" in view:
            value = when_and_age(view[f"{key}_ms"], now)
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        out.print(f"{key:>22}: {'—' if value is None else value}", markup=False)
    out.print(f"{'attempt_history':>22}: {'—' if not history else ''}", markup=False)
    for entry in history:
        error = f"  {entry['error']}" if entry["error"] else ""
        out.print(
            f"{'':>24}#{entry['attempt']} {entry['outcome']} on {entry['worker'] or '?'}"
            f" ({entry['started_at'] or '?'} → {entry['ended_at'] or '?'}){error}",
            markup=False,
        )


@app.command("show")
def show(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="a memory-tree id (job:…) or a decay id (dj_…)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every field of one job, times in UTC with their age (read-only)."""
    show_command(ctx, job_id, as_json)


@app.command("retry")
def retry(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="a failed job: job:… or dj_…"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Put a failed job back to ready with fresh attempts."""
    job = _writer(ctx).retry(job_id)
    if as_json:
        emit_json(job_view(job))
        return
    out.print(f"{job.id} is ready again (attempts reset); a dispatch sweep publishes it", markup=False)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="a job that has not started: job:… or dj_…"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Cancel a job that has not started (ready memory-tree job, pending decay job)."""
    admin = _writer(ctx)
    if admin.show(job_id) is None:
        fail(f"no job {job_id!r}", "list jobs with `memtasks jobs list`")
    if not admin.cancel(job_id):
        fail(f"job {job_id} has already started or finished: only waiting jobs can be cancelled")
    if as_json:
        job = admin.show(job_id)
        emit_json(job_view(job) if job is not None else {"id": job_id, "status": "cancelled"})
        return
    out.print(f"{job_id} cancelled", markup=False)


def requeue(
    ctx: typer.Context,
    table: str = typer.Option("all", "--table", "-t", help=TABLE_HELP, autocompletion=completer(TABLES)),
    kind: str | None = typer.Option(
        None, "--kind", "-k", help="only jobs of this kind", autocompletion=completer(kinds_of(Table.ALL))
    ),
    failure_class: str | None = typer.Option(
        None,
        "--failure-class",
        help="transient (no class recorded counts as transient) or unrecoverable",
        autocompletion=completer(FAILURE_CLASSES),
    ),
    failed_before: str | None = typer.Option(
        None,
        "--failed-before",
        "--older-than",
        help="only jobs that failed at least this long ago: 30m, 2h, 3d",
    ),
    transient_only: bool = typer.Option(
        False, "--transient-only", help="leave unrecoverable failures (bad input) failed"
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask before requeueing"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Failed jobs (memory-tree and decay) back to ready with fresh attempts: counts what the
    filters match, then asks (unless --yes)."""
    which_table = parse_table(table)
    cls = None if failure_class is None else enum_choice(failure_class, FailureClass, "failure class")
    if transient_only and cls is FailureClass.UNRECOVERABLE:
        usage("--transient-only and --failure-class unrecoverable contradict each other: give one of them")
    check_kind(kind, which_table)
    if kind is not None and which_table is Table.ALL:
        which_table = table_of_kind(kind) or which_table
    age_ms = None if failed_before is None else parse_age(failed_before, "--failed-before")
    which = RequeueFilter(
        table=which_table,
        kind=kind,
        failure_class=cls,
        failed_before_age_ms=age_ms,
        transient_only=transient_only,
    )
    admin = _writer(ctx)
    matching = admin.count_failed(which)
    if matching and not yes:
        if not sys.stdin.isatty():
            usage(
                f"requeue {matching} failed jobs: confirm with --yes (stdin is not a terminal, so "
                "there is no one to ask)"
            )
        if not typer.confirm(f"requeue {matching} failed jobs?", default=False, err=True):
            fail("not confirmed: nothing requeued")
    count = admin.requeue_failed(which) if matching else 0
    if as_json:
        emit_json({"matched": matching, "requeued": count, "filter": _described(which)})
        return
    out.print(f"{count} failed jobs requeued{_suffix(which)}", markup=False)


def _described(which: RequeueFilter) -> dict[str, Any]:
    return {
        "table": which.table.value,
        "kind": which.kind,
        "failure_class": None if which.failure_class is None else which.failure_class.value,
        "failed_before_age_ms": which.failed_before_age_ms,
        "transient_only": which.transient_only,
    }


def _suffix(which: RequeueFilter) -> str:
    parts = [f"{k}={v}" for k, v in _described(which).items() if v not in (None, False, "all")]
    if which.transient_only:
        parts = [p for p in parts if not p.startswith("transient_only")] + ["transient only"]
    return f" ({', '.join(parts)})" if parts else ""
