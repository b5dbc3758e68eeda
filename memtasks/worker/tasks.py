"""The thin tasks: each one is a call into a service of :class:`~memtasks.services.fleet.FleetServices`.

A job task is never retried by Celery: a failure is recorded on the job's row, which
decides when the job comes back (its backoff, through the dispatcher). The tasks whose
message is the only copy of their data (remote enqueues, retrieval-failure batches) are
retried while the database cannot be reached, so an outage loses none of them. Bad input
is logged with what is wrong and acknowledged, never re-delivered forever.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from celery import Celery, Task
from sqlalchemy.exc import InterfaceError, OperationalError

from memtasks.domain.errors import ConfigurationError, MemtasksError, StorageError, ValidationError
from memtasks.domain.masking import mask_urls_in
from memtasks.domain.text import shorten
from memtasks.domain.wire import drain_limit, parse_kinds
from memtasks.services.fleet import FleetServices
from memtasks.services.mem_tree import MemTreeRunner, Outcome, RunResult
from memtasks.worker import names

log = logging.getLogger("memtasks.worker")


RETRY_CAP_S = 60
LOGGED_CHARS = 300
"""How much of a refused message's payload a log line shows."""
T = TypeVar("T")


def _retrying(task: Task, call: Callable[[], T]) -> T:
    """For tasks whose message is the only copy of their data (remote enqueues, failure
    batches): when the database cannot be reached, retry the message — after 1, 2, 4 … up to
    60 s, for as long as it takes — instead of acknowledging it and losing the data."""
    try:
        return call()
    except (OperationalError, InterfaceError, StorageError, ConfigurationError) as exc:
        countdown = min(RETRY_CAP_S, 2 ** min(task.request.retries, 6))
        log.warning(
            "memtasks.worker: database unavailable (%s); %s again in %d s",
            mask_urls_in(str(exc)),
            task.name,
            countdown,
        )
        raise task.retry(countdown=countdown, max_retries=None) from exc


def register(app: Celery, services_for: Callable[[Celery], FleetServices]) -> None:
    """Register every memtasks task on ``app``; ``services_for(app)`` gives this process's services."""

    @app.task(name=names.MEM_TREE_RUN, shared=False)
    def mem_tree_run(job_id: str) -> dict[str, Any]:
        return mem_tree_result(job_id, services_for(app).mem_tree)

    @app.task(name=names.MEM_TREE_ENQUEUE, shared=False, bind=True)
    def mem_tree_enqueue(
        task: Task,
        kind: str,
        payload: Mapping[str, Any],
        dedupe_key: str | None = None,
        delay_s: float | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        try:
            return _retrying(
                task,
                lambda: services_for(app).remote.enqueue_mem_tree(
                    kind, payload, dedupe_key, delay_s, max_attempts
                ),
            )
        except MemtasksError as exc:
            log.error(
                "memtasks.worker: enqueue rejected (%s): kind=%s payload=%s dedupe_key=%s",
                exc,
                shorten(kind),
                shorten(payload, LOGGED_CHARS),
                shorten(dedupe_key),
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
            task.apply_async(kwargs={"kinds": list(kinds), "limit": limit}, queue=queue)
        return drain_result(results)

    @app.task(name=names.DECAY_RUN, shared=False)
    def decay_run(job_id: str) -> dict[str, Any]:
        run = services_for(app).decay.run_for_fleet(job_id)
        return {k: v for k, v in dataclasses.asdict(run).items() if v is not None}

    @app.task(name=names.DECAY_ENQUEUE, shared=False, bind=True)
    def decay_enqueue(
        task: Task,
        kind: str,
        source_ids: Sequence[str],
        created_by: str,
        method: str = "deterministic_concatenate",
        delay_s: float | None = None,
    ) -> dict[str, Any]:
        try:
            return _retrying(
                task,
                lambda: services_for(app).remote.enqueue_decay(kind, source_ids, created_by, method, delay_s),
            )
        except MemtasksError as exc:
            log.error(
                "memtasks.worker: decay enqueue rejected (%s): kind=%s sources=%s",
                exc,
                shorten(kind),
                shorten(source_ids, LOGGED_CHARS),
            )
            return {"error": str(exc)}

    @app.task(name=names.RECORD_RETRIEVAL_FAILURES, shared=False, bind=True)
    def record_retrieval_failures(task: Task, batch: Sequence[object]) -> dict[str, int]:
        try:
            return _retrying(task, lambda: services_for(app).remote.record_retrieval_failures(batch))
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
