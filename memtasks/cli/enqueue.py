"""``memtasks enqueue mem-tree|decay``: jobs from an operator's shell."""

from __future__ import annotations

import json
from typing import Any

import typer

from memtasks.cli.common import fail, out, state
from memtasks.cli.fleet import from_settings
from memtasks.domain.clock import SECOND_MS
from memtasks.domain.decay import DecayKind, DecaySpec, SummaryMethod
from memtasks.domain.jobs import JobKind, NewJob

app = typer.Typer(help="Enqueue a job (it is published to the workers after commit).", no_args_is_help=True)


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--payload is not valid JSON: {exc}", 'e.g. --payload \'{"chunk_id": "c1"}\'')
    if not isinstance(value, dict):
        fail(f"--payload must be a JSON object, got {type(value).__name__}")
    return value


@app.command("mem-tree")
def mem_tree(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help=", ".join(k.value for k in JobKind)),
    payload: str = typer.Option("{}", "--payload", "-p", help="the job's payload, a JSON object"),
    dedupe_key: str | None = typer.Option(None, "--dedupe-key"),
    delay_s: float = typer.Option(0.0, "--delay", min=0, help="seconds before the job is due"),
) -> None:
    """Enqueue one memory-tree job."""
    from memtasks.producer import Producer  # imports the Celery app: see memtasks.cli.demo

    s = state(ctx)
    producer = Producer(s.settings)
    available = None if not delay_s else s.runtime.jobs.clock() + int(delay_s * SECOND_MS)
    job = NewJob(JobKind.parse(kind), _payload(payload), dedupe_key, available)
    job_id = producer.enqueue(job)
    if job_id is None:
        out.print(f"not enqueued: a ready or running job holds dedupe key {dedupe_key!r}", markup=False)
        return
    out.print(job_id, markup=False)


@app.command("decay")
def decay(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help=", ".join(k.value for k in DecayKind)),
    source_ids: list[str] = typer.Argument(..., help="the memories or episodes to compress"),
    created_by: str = typer.Option(
        None, "--created-by", callback=from_settings("operator", required=True), help="who asks for it"
    ),
    method: str = typer.Option(SummaryMethod.DETERMINISTIC_CONCATENATE.value, "--method"),
) -> None:
    """Enqueue one decay job (an LLM-summary job then waits for `memtasks decay run`)."""
    from memtasks.producer import Producer  # imports the Celery app: see memtasks.cli.demo

    try:
        spec = DecaySpec(DecayKind(kind), tuple(source_ids), SummaryMethod(method))
    except ValueError as exc:
        fail(str(exc))
    job_id = Producer(state(ctx).settings).enqueue_decay(spec, created_by=created_by)
    out.print(job_id, markup=False)
