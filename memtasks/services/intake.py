"""One gate for everything a producer hands memtasks.

The producer API (:class:`memtasks.producer.Producer`, and ``memtasks enqueue`` built on it)
and the tasks producers without database access call by name (``memtasks.mem_tree.enqueue``,
``memtasks.decay.enqueue``, ``memtasks.retrieval_failures.record``) check their input with the
functions here: the same rules in the same order, so the same bad input is refused with the
same message whichever way it comes, before anything is written.

- a mem-tree job (:func:`check_mem_tree_job`): a :class:`NewJob` — a known kind, a JSON object
  of at most 1 MB, a dedupe key, max attempts, a due time — whose payload, read back from the
  JSON text that will be stored, has the shape of its kind (:func:`validate_payload`);
- a decay job (:func:`check_decay_job`): a :class:`DecaySpec` — kind, method, source ids —,
  who asked for it and when it is due;
- a job id a producer chose (:func:`mem_tree_job_id_from_wire`, :func:`decay_job_id_from_wire`);
- retrieval failures (:func:`retrieval_failure_batch`): a list of at most
  :data:`MAX_RETRIEVAL_FAILURE_BATCH` records, each one a valid :class:`RetrievalFailure`.

Wire input (the ``*_from_wire`` forms) is JSON from anybody who can reach the broker: every
value is checked before it is used, and a delay becomes a due time the same way on each path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memtasks.domain.clock import MAX_TIMESTAMP_MS, SECOND_MS
from memtasks.domain.decay import (
    DecayKind,
    DecaySpec,
    SummaryMethod,
    check_created_by,
    check_scheduled_for_ms,
)
from memtasks.domain.errors import ValidationError
from memtasks.domain.ids import check_decay_job_id, check_mem_tree_job_id
from memtasks.domain.jobs import NewJob, decode_payload
from memtasks.domain.retrieval import RetrievalFailure
from memtasks.domain.text import shorten
from memtasks.domain.tree import validate_payload
from memtasks.domain.wire import check_delay_s

MAX_RETRIEVAL_FAILURE_BATCH = 1_000
"""Records in one ``memtasks.retrieval_failures.record`` message (the producer's sink splits)."""
CODE_BAD_REQUEST = "intake.invalid"


# ── mem-tree jobs ─────────────────────────────────────────────────────────────


def check_mem_tree_job(job: NewJob) -> NewJob:
    """``job`` when a producer may enqueue it; :class:`ValidationError` naming what is wrong.

    :class:`NewJob` has checked the kind, the JSON form and size of the payload, the dedupe
    key, max attempts and the due time when it was made; this checks the payload's shape for
    its kind on the JSON text that is stored (a caller's later change to its dict counts for
    nothing).
    """
    if not isinstance(job, NewJob):
        raise ValidationError(f"expected a NewJob, got {shorten(job)}", code=CODE_BAD_REQUEST)
    validate_payload(job.kind, decode_payload(job.payload_json))
    return job


def mem_tree_job(
    kind: Any,
    payload: Any,
    dedupe_key: Any = None,
    *,
    available_at_ms: Any = None,
    max_attempts: Any = None,
    fair_key: Any = None,
) -> NewJob:
    """The job of these fields, checked as :func:`check_mem_tree_job` checks a producer's."""
    return check_mem_tree_job(NewJob(kind, payload, dedupe_key, available_at_ms, max_attempts, fair_key))


def mem_tree_job_from_wire(
    kind: Any,
    payload: Any,
    dedupe_key: Any,
    delay_s: Any,
    max_attempts: Any,
    *,
    now_ms: int,
    fair_key: Any = None,
) -> NewJob:
    """The job a ``memtasks.mem_tree.enqueue`` message asks for (``delay_s`` from ``now_ms``)."""
    return mem_tree_job(
        kind,
        payload,
        dedupe_key,
        available_at_ms=due_at(delay_s, now_ms),
        max_attempts=max_attempts,
        fair_key=fair_key,
    )


def mem_tree_job_id_from_wire(value: Any) -> str | None:
    """The id a producer chose for its mem-tree job (``job:<uuid>``), or None when it left
    the choice to the worker; :class:`ValidationError` naming ``job_id`` otherwise."""
    return None if value is None else check_mem_tree_job_id(value)


def due_at(delay_s: Any, now_ms: int) -> int | None:
    """When a job delayed by ``delay_s`` seconds is due; None (now) for no delay."""
    seconds = check_delay_s(delay_s)
    if not seconds:
        return None
    return min(now_ms + int(seconds * SECOND_MS), MAX_TIMESTAMP_MS)


# ── decay jobs ────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class DecayRequest:
    """A decay job a producer may enqueue."""

    spec: DecaySpec
    created_by: str
    scheduled_for_ms: int | None = None


def check_decay_job(spec: DecaySpec, created_by: Any, scheduled_for_ms: Any = None) -> DecayRequest:
    """The request when a producer may enqueue it; :class:`ValidationError` naming what is wrong.

    :class:`DecaySpec` has checked the kind, the method and the source ids when it was made;
    this checks who asked (a non-blank name of at most 128 characters) and the due time.
    """
    if not isinstance(spec, DecaySpec):
        raise ValidationError(f"expected a DecaySpec, got {shorten(spec)}", code=CODE_BAD_REQUEST)
    check_created_by(created_by)
    return DecayRequest(spec, created_by, check_scheduled_for_ms(scheduled_for_ms, code=CODE_BAD_REQUEST))


def decay_job(
    kind: Any,
    source_ids: Any,
    created_by: Any,
    method: Any = SummaryMethod.DETERMINISTIC_CONCATENATE.value,
    *,
    scheduled_for_ms: Any = None,
) -> DecayRequest:
    """The decay job of these fields, checked as :func:`check_decay_job` checks a producer's."""
    spec = DecaySpec(_decay_kind(kind), source_ids, _method(method))
    return check_decay_job(spec, created_by, scheduled_for_ms)


def decay_job_from_wire(
    kind: Any, source_ids: Any, created_by: Any, method: Any, delay_s: Any, *, now_ms: int
) -> DecayRequest:
    """The decay job a ``memtasks.decay.enqueue`` message asks for (``delay_s`` from ``now_ms``)."""
    return decay_job(kind, source_ids, created_by, method, scheduled_for_ms=due_at(delay_s, now_ms))


def decay_job_id_from_wire(value: Any) -> str | None:
    """The id a producer chose for its decay job (``dj_<32 hex>``), or None when it left the
    choice to the worker; :class:`ValidationError` naming ``job_id`` otherwise."""
    return None if value is None else check_decay_job_id(value)


def _decay_kind(value: Any) -> DecayKind:
    # The same message DecaySpec gives a producer that passes the string itself.
    try:
        return DecayKind(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="decay.job.malformed") from None


def _method(value: Any) -> SummaryMethod:
    try:
        return SummaryMethod(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="decay.job.malformed") from None


# ── retrieval failures ────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class RetrievalFailureBatch:
    """The valid records of a batch, and why each refused one was refused."""

    records: tuple[RetrievalFailure, ...]
    rejected: tuple[str, ...]


def retrieval_failure_batch(batch: Any) -> RetrievalFailureBatch:
    """Check a batch of wire records (:meth:`RetrievalFailure.to_wire` dicts).

    A batch that is not a list, or longer than :data:`MAX_RETRIEVAL_FAILURE_BATCH`, is refused
    whole (:class:`ValidationError`); otherwise each record is kept or refused on its own.
    """
    if not isinstance(batch, list | tuple):
        raise ValidationError(
            f"a retrieval-failure batch must be a list of records, got {shorten(batch)}",
            code=CODE_BAD_REQUEST,
        )
    if len(batch) > MAX_RETRIEVAL_FAILURE_BATCH:
        raise ValidationError(
            f"a retrieval-failure batch holds at most {MAX_RETRIEVAL_FAILURE_BATCH} records, "
            f"got {len(batch)}",
            code=CODE_BAD_REQUEST,
        )
    records: list[RetrievalFailure] = []
    rejected: list[str] = []
    for wire in batch:
        try:
            records.append(RetrievalFailure.from_wire(wire))
        except (ValidationError, TypeError) as exc:
            rejected.append(str(exc))
    return RetrievalFailureBatch(tuple(records), tuple(rejected))


def wire_batches(records: Sequence[RetrievalFailure]) -> list[list[dict[str, object]]]:
    """The producer side of :func:`retrieval_failure_batch`: ``records`` as wire batches the
    worker accepts (each checked by the same function, at most the maximum size each)."""
    batches: list[list[dict[str, object]]] = []
    for start in range(0, len(records), MAX_RETRIEVAL_FAILURE_BATCH):
        part = [record.to_wire() for record in records[start : start + MAX_RETRIEVAL_FAILURE_BATCH]]
        checked = retrieval_failure_batch(part)
        if checked.rejected:
            raise ValidationError(
                f"invalid retrieval failures would be refused by the worker: {checked.rejected[0]}",
                code=CODE_BAD_REQUEST,
            )
        batches.append(part)
    return batches


__all__ = [
    "MAX_RETRIEVAL_FAILURE_BATCH",
    "DecayRequest",
    "RetrievalFailureBatch",
    "check_decay_job",
    "check_mem_tree_job",
    "decay_job",
    "decay_job_from_wire",
    "decay_job_id_from_wire",
    "due_at",
    "mem_tree_job",
    "mem_tree_job_from_wire",
    "mem_tree_job_id_from_wire",
    "retrieval_failure_batch",
    "wire_batches",
]
