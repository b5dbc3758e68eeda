"""The thin tasks: each one is a call into a service of :class:`~memtasks.services.fleet.FleetServices`.

A job task is never retried by Celery: a failure is recorded on the job's row, which
decides when the job comes back (its backoff, through the dispatcher). A job whose handler
failed still shows as failed to Celery — and so in Flower, as FAILURE with a ``task-failed``
event — through :class:`JobFailed`, raised after the row is settled: an expected exception
(``throws``: one log line, no traceback) whose message is acknowledged, not redelivered
(``acks_late`` with ``task_acks_on_failure_or_timeout``). Other outcomes keep their dict
results.

The tasks whose message is the only copy of their data (remote enqueues, retrieval-failure
batches) are retried by Celery's ``autoretry_for`` while the database cannot be reached —
backoff 1, 2, 4 … 60 s with full jitter, for as long as it takes — so an outage loses none
of them. Bad input is logged with what is wrong and acknowledged, never re-delivered forever.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery, Task
from sqlalchemy.exc import InterfaceError, OperationalError

from memtasks.domain.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    MemtasksError,
    StorageError,
    ValidationError,
)
from memtasks.domain.masking import mask_urls_in
from memtasks.domain.text import shorten
from memtasks.domain.wire import drain_limit, parse_kinds
from memtasks.services.fleet import FleetServices
from memtasks.services.mem_tree import MemTreeRunner, Outcome, RunResult
from memtasks.worker import names

log = logging.getLogger("memtasks.worker")


RETRY_CAP_S = 60
"""The longest wait between two retries of an only-copy task (Celery's ``retry_backoff_max``)."""
UNREACHABLE = (OperationalError, InterfaceError, StorageError, ConfigurationError)
"""What an only-copy task is retried for: the database (or its settings) cannot be used now."""
ONLY_COPY: dict[str, Any] = {
    "autoretry_for": UNREACHABLE,
    "retry_backoff": True,
    "retry_backoff_max": RETRY_CAP_S,
    "retry_jitter": True,
    "max_retries": None,
}
"""Celery's retry options of the tasks whose message is the only copy of their data."""
LOGGED_CHARS = 300
"""How much of a refused message's payload a log line shows."""
FAILED_OUTCOMES = frozenset({Outcome.FAILED.value, Outcome.RETRY.value})
"""Outcomes of a run whose handler failed (for good, or for now: the row retries it later)."""


class JobFailed(Exception):
    """A job's handler failed; its row is settled (failed, or ready again after its backoff).

    Raised by a run task after the settle so that Celery records a failure (Flower: FAILURE).
    Declared in the task's ``throws``: one log line, no traceback, and the message is
    acknowledged — the row, not Celery, decides whether the job runs again.
    """


def _only_copy(task: Task, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``call``; when the database cannot be used, log it (masked) and raise an error that
    ``autoretry_for`` retries, its message masked too (Celery logs it and puts it in events)."""
    try:
        return call()
    except UNREACHABLE as exc:
        masked = mask_urls_in(str(exc))
        log.warning(
            "memtasks.worker: database unavailable (%s); %s again after a backoff of up to %d s (retry %d)",
            masked,
            task.name,
            RETRY_CAP_S,
            task.request.retries + 1,
        )
        raise DatabaseUnavailable(masked) from None


def register(app: Celery, services_for: Callable[[Celery], FleetServices]) -> None:
    """Register every memtasks task on ``app``; ``services_for(app)`` gives this process's services."""

    @app.task(name=names.MEM_TREE_RUN, shared=False, throws=(JobFailed,))
    def mem_tree_run(job_id: str) -> dict[str, Any]:
        return raise_if_failed(mem_tree_result(job_id, services_for(app).mem_tree))

    @app.task(name=names.MEM_TREE_ENQUEUE, shared=False, bind=True, **ONLY_COPY)
    def mem_tree_enqueue(
        task: Task,
        kind: str,
        payload: Mapping[str, Any],
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
        job_id: str | None = None,
        fair_key: str | None = None,
    ) -> dict[str, Any]:
        try:
            return _only_copy(
                task,
                lambda: services_for(app).remote.enqueue_mem_tree(
                    kind, payload, dedupe_key, delay_s, max_attempts, job_id, fair_key
                ),
            )
        except StorageError:
            raise
        except MemtasksError as exc:
            log.error(
                "memtasks.worker: enqueue rejected (%s): kind=%s payload=%s dedupe_key=%s job_id=%s",
                exc,
                shorten(kind),
                shorten(payload, LOGGED_CHARS),
                shorten(dedupe_key),
                shorten(job_id),
            )
            return {"error": str(exc)}

    @app.task(name=names.MEM_TREE_DRAIN, shared=False, bind=True)
    def mem_tree_drain(task: Task, kinds: Sequence[str], limit: int = 100) -> dict[str, Any]:
        # Batches until one comes back short (no due row left behind); after a minute of a
        # backlog that keeps growing, a new drain message of the same queue carries on.
        results, emptied = services_for(app).mem_tree.drain_until_empty(
            parse_kinds(kinds), drain_limit(limit)
        )
        if not emptied:
            queue = (task.request.delivery_info or {}).get("routing_key") or names.DEFAULT
            task.apply_async(
                kwargs={"kinds": list(kinds), "limit": limit},
                queue=queue,
                shadow=names.shadow(names.MEM_TREE_DRAIN, queue),
            )
        return drain_result(results)

    @app.task(name=names.DECAY_RUN, shared=False, throws=(JobFailed,))
    def decay_run(job_id: str) -> dict[str, Any]:
        run = services_for(app).decay.run_for_fleet(job_id)
        return raise_if_failed({k: v for k, v in dataclasses.asdict(run).items() if v is not None})

    @app.task(name=names.DECAY_ENQUEUE, shared=False, bind=True, **ONLY_COPY)
    def decay_enqueue(
        task: Task,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = "deterministic_concatenate",
        delay_s: float | None = None,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        try:
            return _only_copy(
                task,
                lambda: services_for(app).remote.enqueue_decay(
                    kind, source_ids, created_by, method, delay_s, job_id
                ),
            )
        except StorageError:
            raise
        except MemtasksError as exc:
            log.error(
                "memtasks.worker: decay enqueue rejected (%s): kind=%s sources=%s job_id=%s",
                exc,
                shorten(kind),
                shorten(source_ids, LOGGED_CHARS),
                shorten(job_id),
            )
            return {"error": str(exc)}

    @app.task(name=names.RECORD_RETRIEVAL_FAILURES, shared=False, bind=True, **ONLY_COPY)
    def record_retrieval_failures(task: Task, batch: Sequence[object]) -> dict[str, Any]:
        try:
            return _only_copy(task, lambda: services_for(app).remote.record_retrieval_failures(batch))
        except StorageError:
            raise
        except MemtasksError as exc:  # the batch as a whole is refused (not a list, too long)
            log.error("memtasks.worker: retrieval-failure batch rejected (%s)", exc)
            return {"written": 0, "rejected": len(batch) if isinstance(batch, list | tuple) else 1}

    def make_sweep(sweep_name: str, task_name: str) -> None:
        @app.task(name=task_name, shared=False)
        def sweep(name: str = sweep_name, interval_s: float = 60.0) -> dict[str, Any]:
            # ``name`` travels in the beat message for Flower; the task's own name decides.
            del name
            run = services_for(app).sweeps.run(sweep_name, interval_s)
            return {"ran": run.ran, "skipped_because": run.skipped_because, "slot": run.slot}

    for sweep_name, task_name in names.SWEEPS.items():
        make_sweep(sweep_name, task_name)


def raise_if_failed(result: dict[str, Any]) -> dict[str, Any]:
    """``result``, or :class:`JobFailed` saying what failed when the job's handler failed."""
    if result.get("outcome") in FAILED_OUTCOMES:
        what = "failed" if result["outcome"] == Outcome.FAILED.value else "failed and will be retried"
        kind = f" ({result['kind']})" if result.get("kind") else ""
        attempts = f" at attempt {result['attempts']}" if result.get("attempts") else ""
        raise JobFailed(
            f"job {result['job_id']}{kind} {what}{attempts}: {result.get('error') or 'no error text'}"
        )
    return result


def drain_result(results: Sequence[RunResult]) -> dict[str, Any]:
    """What a drain ran, for its task result (Flower shows it): how many, per outcome and per
    kind, and each job's id under its outcome."""
    jobs: dict[str, list[str]] = {}
    for result in results:
        jobs.setdefault(result.outcome.value, []).append(result.job_id)
    return {
        "claimed": len(results),
        **Counter(result.outcome.value for result in results),
        "kinds": dict(Counter(result.kind for result in results)),
        "jobs": jobs,
    }


def mem_tree_result(job_id: str, runner: MemTreeRunner) -> dict[str, Any]:
    """Run ``job_id`` and say what happened, in the task's result (Flower shows it)."""
    try:
        result = runner.run_by_id(job_id)
    except ValidationError as exc:
        log.error("memtasks.worker: job %.100r failed as unrecoverable at claim: %s", job_id, exc)
        return {"job_id": job_id, "outcome": "failed", "error": str(exc)}
    if result is None:
        log.info("memtasks.worker: job %.100r is not claimable now; message dropped", job_id)
        return {"job_id": job_id, "outcome": "not_claimable"}
    if result.outcome is Outcome.WAITING:
        return {"job_id": job_id, "outcome": result.outcome.value}
    return {
        "job_id": job_id,
        "kind": result.kind,
        "outcome": result.outcome.value,
        "attempts": result.attempts,
        "followups": len(result.followups),
        **({"error": result.error} if result.error else {}),
    }
