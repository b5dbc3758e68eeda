"""``memtasks consolidate``, ``memtasks decay run``, ``memtasks failures report``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from memtasks.cli.common import emit_json, fail, out, state
from memtasks.domain.clock import HOUR_MS
from memtasks.services.consolidation_report import ConsolidationReport
from memtasks.services.decay_runner import DecayRunner
from memtasks.services.holding import holding_for
from memtasks.services.maintenance import consolidator_for
from memtasks.services.plugins import attestation_verifier, summary_backend
from memtasks.services.retrieval_failures import retrieval_report

decay_app = typer.Typer(help="Decay jobs that need an operator.", no_args_is_help=True)
failures_app = typer.Typer(help="Retrieval failures.", no_args_is_help=True)


def consolidate(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="count what a run would delete; delete nothing"),
    force: bool = typer.Option(False, "--force", help="prune now, bypassing the time and session gates"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run consolidation once (through its gates unless --force) and print the result."""
    consolidator = consolidator_for(state(ctx).runtime)
    if dry_run:
        report = consolidator.dry_run("manual")
    elif force:
        report = consolidator.prune("manual")
    else:
        report = consolidator.maybe_run("manual")
    if as_json:
        emit_json(report)
        return
    _print_report(report)


def _print_report(report: ConsolidationReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    head = "dry run" if report.dry_run else "consolidation"
    out.print(f"{head}: {report.outcome.value} in {report.duration_ms} ms", markup=False)
    for decision in report.gates:
        mark = "pass" if decision.passed else "STOP"
        out.print(f"  {decision.gate.value:>8} gate: {mark} — {decision.reason}", markup=False)
    if report.ran:
        out.print(
            f"  {verb} {report.messages_pruned} messages, {report.outcomes_pruned} outcomes", markup=False
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read the {what} {path}: {exc.strerror}")


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
) -> None:
    """Run one decay job here, now. An LLM summary runs only with its attestation, holding one
    of the fleet's LLM permits."""
    s = state(ctx)
    job = s.runtime.decay.get(job_id)
    if job is None:
        fail(f"no decay job {job_id!r}", "list jobs with `memtasks status`")
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
    if not outcome.ran:
        if outcome.state.value in {"failed", "cancelled"}:
            fail(f"{job_id} is {outcome.state.value}: nothing ran", "enqueue a new decay job")
        out.print(f"{job_id} was already {outcome.state.value}: nothing to do", markup=False)
        return
    out.print(f"{job_id} {outcome.state.value}: summary memory {outcome.result_memory_id}", markup=False)


@decay_app.command("submit")
def decay_submit(
    ctx: typer.Context,
    job_id: str,
    attestation: Path = typer.Option(..., "--attestation", help="the operator's signed attestation (JSON)"),
) -> None:
    """Hand a pending LLM-summary job to the fleet with its attestation: a worker on the ``llm``
    queue verifies it again, takes an LLM permit and runs it (retrying transient errors)."""
    from memtasks.producer import Producer  # the Celery client: see memtasks.cli.demo

    document = _read(attestation, "attestation").decode("utf-8", "replace")
    producer = Producer(state(ctx).settings)
    try:
        if not producer.submit_decay(job_id, document):
            fail(f"{job_id} is not a pending LLM-summary job", "see it with `memtasks jobs show`")
    finally:
        producer.close()
    out.print(f"{job_id} handed to the fleet (queue llm)", markup=False)


@failures_app.command("report")
def failures_report(
    ctx: typer.Context,
    hours: float = typer.Option(24.0, "--hours", min=0.001, help="the window, ending now"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Retrieval failures grouped by type and strategy over the last --hours."""
    s = state(ctx)
    summaries = retrieval_report(s.runtime.engine, int(hours * HOUR_MS), s.runtime.jobs.clock)
    if as_json:
        emit_json(summaries)
        return
    table = Table(title=f"retrieval failures, last {hours:g} h", title_justify="left")
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
