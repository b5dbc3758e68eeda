"""``memtasks enqueue mem-tree|decay``: jobs from an operator's shell.

Bad input (an unknown kind, a payload that is no JSON object, a payload the kind refuses)
exits 2; a job not enqueued because its dedupe key is held exits 0 and says which job holds it.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from memtasks.cli.common import JSON_HELP, completer, emit_json, enum_choice, out, state, usage
from memtasks.cli.fleet import from_settings
from memtasks.domain.clock import SECOND_MS
from memtasks.domain.decay import DecayKind, DecaySpec, SummaryMethod
from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.services.admin import JobsAdmin

app = typer.Typer(help="Enqueue a job (it is published to the workers after commit).", no_args_is_help=True)


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        usage(f"--payload is not valid JSON: {exc}", 'e.g. --payload \'{"chunk_id": "c1"}\'')
    if not isinstance(value, dict):
        usage(
            f"--payload must be a JSON object, got {type(value).__name__}",
            'e.g. --payload \'{"chunk_id": "c1"}\'',
        )
    return value


@app.command("mem-tree")
def mem_tree(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., help=", ".join(k.value for k in JobKind), autocompletion=completer(JobKind)
    ),
    payload: str = typer.Option("{}", "--payload", "-p", help="the job's payload, a JSON object"),
    dedupe_key: str | None = typer.Option(
        None, "--dedupe-key", help="skip the job while a ready or running job holds this key"
    ),
    delay_s: float = typer.Option(0.0, "--delay", min=0, help="seconds before the job is due"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Enqueue one memory-tree job; prints its id (or the job that holds its dedupe key)."""
    from memtasks.producer import Producer  # imports the Celery app: see memtasks.cli.demo

    job_kind = enum_choice(kind, JobKind, "job kind")
    body = _payload(payload)
    s = state(ctx)
    producer = Producer(s.settings, runtime=s.runtime)
    available = None if not delay_s else s.runtime.jobs.clock() + int(delay_s * SECOND_MS)
    try:
        job_id = producer.enqueue(NewJob(job_kind, body, dedupe_key, available))
    except ValidationError as exc:  # the kind's payload rules, the dedupe key's
        usage(str(exc))
    finally:
        producer.close()
    if job_id is None:
        holder = JobsAdmin(s.runtime).dedupe_holder(dedupe_key or "")
        held_by = None if holder is None else holder.id
        if as_json:
            emit_json(
                {
                    "id": None,
                    "table": "mem_tree",
                    "kind": job_kind.value,
                    "enqueued": False,
                    "deduped": True,
                    "dedupe_key": dedupe_key,
                    "held_by": held_by,
                    "held_by_status": None if holder is None else holder.status.value,
                }
            )
            return
        who = "a job that has just finished" if holder is None else f"{holder.id} ({holder.status.value})"
        out.print(f"not enqueued: dedupe key {dedupe_key} is held by {who}", markup=False)
        return
    if as_json:
        emit_json(
            {
                "id": job_id,
                "table": "mem_tree",
                "kind": job_kind.value,
                "enqueued": True,
                "deduped": False,
                "dedupe_key": dedupe_key,
            }
        )
        return
    out.print(job_id, markup=False)


@app.command("decay")
def decay(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., help=", ".join(k.value for k in DecayKind), autocompletion=completer(DecayKind)
    ),
    source_ids: list[str] = typer.Argument(..., help="the memories or episodes to compress"),
    created_by: str = typer.Option(
        None, "--created-by", callback=from_settings("operator", required=True), help="who asks for it"
    ),
    method: str = typer.Option(
        SummaryMethod.DETERMINISTIC_CONCATENATE.value,
        "--method",
        help=", ".join(m.value for m in SummaryMethod),
        autocompletion=completer(SummaryMethod),
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Enqueue one decay job (an LLM-summary job then waits for `memtasks decay run` or
    `memtasks decay submit`); prints its id."""
    from memtasks.producer import Producer  # imports the Celery app: see memtasks.cli.demo

    decay_kind = enum_choice(kind, DecayKind, "decay kind")
    summary = enum_choice(method, SummaryMethod, "summary method")
    try:
        spec = DecaySpec(decay_kind, tuple(source_ids), summary)
    except (ValueError, ValidationError) as exc:
        usage(str(exc))
    s = state(ctx)
    producer = Producer(s.settings, runtime=s.runtime)
    try:
        job_id = producer.enqueue_decay(spec, created_by=created_by)
    except ValidationError as exc:
        usage(str(exc))
    finally:
        producer.close()
    if as_json:
        emit_json(
            {
                "id": job_id,
                "table": "decay",
                "kind": decay_kind.value,
                "summary_method": summary.value,
                "enqueued": True,
                "needs_operator": spec.needs_operator,
            }
        )
        return
    out.print(job_id, markup=False)
