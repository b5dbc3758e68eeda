"""``memtasks consolidate``, ``memtasks decay list|show|run|submit``, ``memtasks failures report``."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from memtasks.cli.common import (
    JSON_HELP,
    completer,
    emit_json,
    err,
    fail,
    out,
    plain,
    refuse_together,
    state,
    usage,
)
from memtasks.cli.jobs import list_command, show_command
from memtasks.domain.clock import HOUR_MS
from memtasks.services.admin import DECAY_PREFIX, Table, kinds_of, status_words
from memtasks.services.consolidation_report import ConsolidationReport
from memtasks.services.decay_runner import DecayRunner
from memtasks.services.dry_run import unrecorded_dry_run
from memtasks.services.holding import holding_for
from memtasks.services.job_view import iso
from memtasks.services.maintenance import consolidator_for
from memtasks.services.plugins import attestation_verifier, summary_backend
from memtasks.services.retrieval_failures import retrieval_report

decay_app = typer.Typer(
    help="Decay jobs: list, show, and run those that need an operator.", no_args_is_help=True
)
failures_app = typer.Typer(help="Retrieval failures.", no_args_is_help=True)


PROGRESS_EVERY_S = 5.0


class PruneProgress:
    """Progress of a prune on stderr: a Rich line on a terminal, a plain line every few
    seconds otherwise, nothing at all under ``--json``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._stack = ExitStack()
        self._task: TaskID | None = None
        self._progress: Progress | None = None
        self._last = time.monotonic()

    def __enter__(self) -> PruneProgress:
        if self.enabled and err.is_terminal:
            self._progress = self._stack.enter_context(
                Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err)
            )
            self._task = self._progress.add_task("pruning: starting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __call__(self, messages: int, outcomes: int) -> None:
        if not self.enabled:
            return
        text = f"pruning: {messages} messages, {outcomes} outcomes pruned so far"
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)
        elif time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self._last = time.monotonic()
            err.print(text, markup=False)


def consolidate(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="count what a run would delete; delete and record nothing (read-only)"
    ),
    force: bool = typer.Option(False, "--force", help="prune now, bypassing the time and session gates"),
    list_rows: bool = typer.Option(
        False, "--list", help="with --dry-run: also the ids of the messages and outcomes a run would take"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run consolidation once (through its gates unless --force) and print the result; the
    progress of a long prune goes to stderr."""
    refuse_together(**{"--dry-run": dry_run, "--force": force})
    if list_rows and not dry_run:
        usage("--list lists what a dry run would take: give --dry-run with it")
    s = state(ctx)
    if dry_run:
        report = unrecorded_dry_run(s.reader, list_rows=list_rows)
    else:
        consolidator = consolidator_for(s.runtime)
        with PruneProgress(enabled=not as_json) as progress:
            if force:
                report = consolidator.prune("manual", on_progress=progress)
            else:
                report = consolidator.maybe_run("manual", on_progress=progress)
    if as_json:
        view = plain(report)
        view.update(
            started_at=iso(report.started_at_ms),
            finished_at=iso(report.finished_at_ms),
            recorded=not report.dry_run,
        )
        emit_json(view)
        return
    _print_report(report)


def _print_report(report: ConsolidationReport) -> None:
    keeps = report.archive_grace_days > 0
    if report.dry_run:
        verb = "would archive" if keeps else "would delete"
    else:
        verb = "archived" if keeps else "deleted"
    head = "dry run" if report.dry_run else "consolidation"
    out.print(f"{head}: {report.outcome.value} in {report.duration_ms} ms", markup=False)
    for decision in report.gates:
        mark = "pass" if decision.passed else "STOP"
        out.print(f"  {decision.gate.value:>8} gate: {mark} — {decision.reason}", markup=False)
    if report.ran:
        out.print(
            f"  {verb} {report.messages_pruned} messages, {report.outcomes_pruned} outcomes", markup=False
        )
        if keeps:
            restore = "" if report.dry_run else f" (`memtasks archive restore --run {report.run_id}`)"
            out.print(
                f"  restorable for {report.archive_grace_days:g} days, then purged{restore}", markup=False
            )
    for name, ids in (report.listed or {}).items():
        out.print(f"  {name}: {' '.join(map(str, ids)) or '-'}", markup=False)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read the {what} {path}: {exc.strerror}")


@decay_app.command("list")
def decay_list(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None,
        "--status",
        "-s",
        help=", ".join(status_words(Table.DECAY)),
        autocompletion=completer(status_words(Table.DECAY)),
    ),
    kind: str | None = typer.Option(
        None,
        "--kind",
        "-k",
        help=", ".join(kinds_of(Table.DECAY)),
        autocompletion=completer(kinds_of(Table.DECAY)),
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The newest decay jobs first (read-only; `memtasks jobs list --table decay`)."""
    list_command(ctx, Table.DECAY, status, kind, limit, as_json)


@decay_app.command("show")
def decay_show(
    ctx: typer.Context,
    job_id: str = typer.Argument(..., help="a decay job's id (dj_…)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every field of one decay job (read-only; `memtasks jobs show ID`)."""
    if not job_id.startswith(DECAY_PREFIX):
        usage(f"{job_id!r:.80} is not a decay job id (dj_…)", "show it with `memtasks jobs show`")
    show_command(ctx, job_id, as_json)


@decay_app.command("run")
def decay_run(
    ctx: typer.Context,
    job_id: str,
    attestation: Path | None = typer.Option(
        None, "--attestation", help="the operator's signed attestation for this job (JSON)"
    ),
    operator_key: str | None = typer.Option(None, "--operator-key", envvar="MEMTASKS_OPERATOR_PUBLIC_KEY"),
    model: str | None = typer.Option(None, "--model", envvar="MEMTASKS_LLM_MODEL"),
    prompt_hash: str | None = typer.Option(None, "--prompt-hash", envvar="MEMTASKS_LLM_PROMPT_TEMPLATE_HASH"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Run one decay job here, now. An LLM summary runs only with its attestation, holding one
    of the fleet's LLM permits."""
    s = state(ctx)
    job = s.runtime.decay.get(job_id)
    if job is None:
        fail(f"no decay job {job_id!r}", "list them with `memtasks decay list`")
    if job.state.value in {"failed", "cancelled"}:
        fail(f"{job_id} is {job.state.value}: nothing ran", "enqueue a new decay job")
    document: bytes | None = None
    if attestation is not None:
        document = _read(attestation, "attestation")
    elif job.needs_operator:
        fail(f"{job_id} is an LLM-summary job", "it runs only with --attestation FILE signed by an operator")
    runner = DecayRunner(
        s.runtime.engine,
        s.runtime.decay,
        summary_backend=summary_backend(s.settings),
        verifier=attestation_verifier(operator_key, model, prompt_hash),
        holding=holding_for(s.settings) if job.needs_operator else None,
    )
    outcome = runner.run_by_id(job_id, document)
    if not outcome.ran and outcome.state.value in {"failed", "cancelled"}:
        fail(f"{job_id} is {outcome.state.value}: nothing ran", "enqueue a new decay job")
    if as_json:
        emit_json(
            {
                "id": job_id,
                "ran": outcome.ran,
                "status": outcome.state.value,
                "result_memory_id": outcome.result_memory_id,
            }
        )
        return
    if not outcome.ran:
        out.print(f"{job_id} was already {outcome.state.value}: nothing to do", markup=False)
        return
    out.print(f"{job_id} {outcome.state.value}: summary memory {outcome.result_memory_id}", markup=False)


@decay_app.command("submit")
def decay_submit(
    ctx: typer.Context,
    job_id: str,
    attestation: Path = typer.Option(..., "--attestation", help="the operator's signed attestation (JSON)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Hand a pending LLM-summary job to the fleet with its attestation: a worker on the ``llm``
    queue verifies it again, takes an LLM permit and runs it (retrying transient errors)."""
    from memtasks.producer import Producer  # the Celery client: see memtasks.cli.demo

    document = _read(attestation, "attestation").decode("utf-8", "replace")
    s = state(ctx)
    producer = Producer(s.settings, runtime=s.runtime)
    try:
        if not producer.submit_decay(job_id, document):
            fail(f"{job_id} is not a pending LLM-summary job", "see it with `memtasks jobs show`")
    finally:
        producer.close()
    if as_json:
        emit_json({"id": job_id, "submitted": True, "queue": "llm"})
        return
    out.print(f"{job_id} handed to the fleet (queue llm)", markup=False)


@failures_app.command("report")
def failures_report(
    ctx: typer.Context,
    hours: float = typer.Option(24.0, "--hours", min=0.001, help="the window, ending now"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Retrieval failures grouped by type and strategy over the last --hours (read-only)."""
    s = state(ctx)
    now = s.reader.jobs.clock()
    summaries = retrieval_report(s.reader.engine, int(hours * HOUR_MS), lambda: now)
    if as_json:
        emit_json(
            {
                "hours": hours,
                "since": iso(now - int(hours * HOUR_MS)),
                "until": iso(now),
                "total": sum(r.count for r in summaries),
                "groups": summaries,
            }
        )
        return
    table = RichTable(title=f"retrieval failures, last {hours:g} h", title_justify="left")
    for column in (
        "type",
        "strategy",
        "count",
        "avg latency ms",
        "max latency ms",
        "avg results",
        "avg top score",
    ):
        table.add_column(column, justify="left" if column in {"type", "strategy"} else "right")
    for row in summaries:
        table.add_row(
            row.failure_type.value,
            row.retrieval_strategy,
            str(row.count),
            f"{row.avg_latency_ms:.0f}",
            str(row.max_latency_ms),
            f"{row.avg_result_count:.1f}",
            "—" if row.avg_top_score is None else f"{row.avg_top_score:.3f}",
        )
    out.print(table)
    out.print(f"{sum(r.count for r in summaries)} failures", markup=False)
