"""Which queue and which message priority a job gets. Pure functions, no Celery."""

from __future__ import annotations

from collections.abc import Mapping

from memtasks.domain.decay import DecayKind
from memtasks.domain.errors import UnknownJobKind
from memtasks.domain.jobs import DEFAULT_PRIORITY, JobKind
from memtasks.worker import names

KIND_QUEUES: Mapping[JobKind, str] = {
    JobKind.SEAL: names.CRITICAL,
    JobKind.FLUSH_STALE: names.CRITICAL,
    JobKind.APPEND_BUFFER: names.DEFAULT,
    JobKind.EXTRACT_CHUNK: names.BULK,
    JobKind.REEMBED_BACKFILL: names.BULK,
    JobKind.SEAL_DOCUMENT: names.BULK,
}

MAX_PRIORITY = 9
"""Priorities 0–9. Redis consumes 0 first; RabbitMQ consumes the highest first."""


def queue_for(kind: JobKind, *, llm_bound: bool, tree_uses_llm: bool) -> str:
    """The queue of a mem-tree job: by kind, or ``llm`` for LLM-bound kinds when the
    text models really call an LLM."""
    if tree_uses_llm and llm_bound:
        return names.LLM
    return KIND_QUEUES[kind]


def queue_of(kind: str, *, tree_uses_llm: bool) -> str:
    """The queue a stored kind name routes to (``none`` for a kind this version does not run)."""
    try:
        job_kind = JobKind.parse(kind)
    except UnknownJobKind:
        return "none"
    return queue_for(job_kind, llm_bound=job_kind.llm_bound, tree_uses_llm=tree_uses_llm)


def broker_is_amqp(broker_url: str) -> bool:
    return broker_url.split(":", 1)[0].lower() in {"amqp", "amqps", "pyamqp"}


def message_priority(kind: JobKind, broker_url: str) -> int:
    """The message priority of ``kind`` in the broker's own order (seal first)."""
    return message_priority_for_rank(kind.priority, broker_url)


def decay_queue_for(*, llm: bool) -> str:
    """The queue of a decay job: ``llm`` for an LLM summary, ``default`` for the deterministic ones."""
    return names.LLM if llm else names.DEFAULT


def decay_priority(kind: str, broker_url: str) -> int:
    """The message priority of a decay job of ``kind`` in the broker's own order."""
    try:
        rank = DecayKind(kind).priority
    except ValueError:
        rank = DEFAULT_PRIORITY  # the claim fails a malformed row and names its kind
    return message_priority_for_rank(rank, broker_url)


def message_priority_for_rank(rank: int, broker_url: str) -> int:
    """``rank`` 1 (seal) … 4 (the rest, and decay jobs) as the broker orders priorities."""
    return MAX_PRIORITY - rank if broker_is_amqp(broker_url) else rank
