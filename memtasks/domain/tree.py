"""The memory tree: job payloads, job builders and the rules of sealing.

A tree holds chunks (level 0) and summaries (level ≥ 1). Every item is appended to the
buffer of its level; a full buffer (``fanout`` items) is sealed into one summary a level
up, which is then appended to the buffer of that level, and so on. A buffer that has
waited longer than ``stale_after_ms`` is sealed even when it is not full (``force``), so
every chunk ends up under a single top summary once the tree is quiet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from memtasks.domain import dedupe
from memtasks.domain.clock import MINUTE_MS
from memtasks.domain.errors import MalformedPayload
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.domain.text import unstorable

MAX_ID_CHARS = 64
MAX_SOURCE_CHARS = 128
MAX_LEVEL = 64


@dataclass(frozen=True, slots=True)
class TreeConfig:
    """How wide the tree is and when a partial buffer is sealed anyway."""

    fanout: int = 8
    stale_after_ms: int = 30 * MINUTE_MS
    reembed_batch: int = 256

    def __post_init__(self) -> None:
        if not 2 <= self.fanout <= 1024:
            raise ValueError("fanout must be between 2 and 1024")
        if self.stale_after_ms < 0:
            raise ValueError("stale_after_ms must not be negative")
        if self.reembed_batch < 1:
            raise ValueError("reembed_batch must be at least 1")


def should_force_seal(*, level: int, count: int, higher_levels_hold_items: bool) -> bool:
    """Whether a stale buffer of ``count`` items is sealed although it is not full.

    Two or more items are always sealed. A lone chunk is sealed so that every chunk has a
    summary. A lone summary is sealed only when a higher level holds items it can join;
    otherwise it is the top of its tree and sealing it would only add a level.
    """
    if count >= 2:
        return True
    if count == 1:
        return level == 0 or higher_levels_hold_items
    return False


# ── payloads ─────────────────────────────────────────────────────────────────


def _text(payload: Mapping[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise MalformedPayload(f"{name!r} must be a non-empty string")
    if len(value) > limit:
        raise MalformedPayload(f"{name!r} is longer than {limit} characters")
    problem = unstorable(value)
    if problem is not None:
        raise MalformedPayload(f"{name!r} {problem}")
    return value


def _required_text(payload: Mapping[str, Any], name: str, limit: int = MAX_ID_CHARS) -> str:
    value = _text(payload, name, limit)
    assert value is not None
    return value


def _level(payload: Mapping[str, Any], name: str = "level") -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEVEL:
        raise MalformedPayload(f"{name!r} must be a whole number between 0 and {MAX_LEVEL}")
    return value


def _flag(payload: Mapping[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise MalformedPayload(f"{name!r} must be true or false")
    return value


def _optional_positive(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedPayload(f"{name!r} must be a positive whole number")
    return value


@dataclass(frozen=True, slots=True)
class ExtractChunk:
    chunk_id: str

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ExtractChunk:
        return cls(_required_text(payload, "chunk_id"))


@dataclass(frozen=True, slots=True)
class AppendBuffer:
    tree_id: str
    level: int
    item_id: str

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> AppendBuffer:
        return cls(_required_text(payload, "tree_id"), _level(payload), _required_text(payload, "item_id"))


@dataclass(frozen=True, slots=True)
class Seal:
    tree_id: str
    level: int
    force: bool = False

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> Seal:
        return cls(_required_text(payload, "tree_id"), _level(payload), _flag(payload, "force"))


@dataclass(frozen=True, slots=True)
class FlushStale:
    older_than_ms: int | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> FlushStale:
        return cls(_optional_positive(payload, "older_than_ms"))


@dataclass(frozen=True, slots=True)
class ReembedBackfill:
    model: str | None = None
    batch: int | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ReembedBackfill:
        return cls(
            _text(payload, "model", MAX_SOURCE_CHARS, required=False), _optional_positive(payload, "batch")
        )


@dataclass(frozen=True, slots=True)
class SealDocument:
    tree_id: str
    doc_id: str
    version: str | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> SealDocument:
        return cls(
            _required_text(payload, "tree_id"),
            _required_text(payload, "doc_id", MAX_SOURCE_CHARS),
            _text(payload, "version", MAX_ID_CHARS, required=False),
        )


PAYLOAD_TYPES: Mapping[JobKind, Any] = {
    JobKind.EXTRACT_CHUNK: ExtractChunk,
    JobKind.APPEND_BUFFER: AppendBuffer,
    JobKind.SEAL: Seal,
    JobKind.FLUSH_STALE: FlushStale,
    JobKind.REEMBED_BACKFILL: ReembedBackfill,
    JobKind.SEAL_DOCUMENT: SealDocument,
}


def validate_payload(kind: JobKind | str, payload: Mapping[str, Any]) -> None:
    """Raise :class:`MalformedPayload` naming the field when ``payload`` does not fit ``kind``
    (:class:`~memtasks.domain.errors.UnknownJobKind` when there is no such kind)."""
    job_kind = JobKind.parse(str(kind))
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"expected a JSON object, got {type(payload).__name__}")
    PAYLOAD_TYPES[job_kind].parse(payload)


# ── job builders (what producers and handlers enqueue) ───────────────────────


def extract_chunk_job(chunk_id: str) -> NewJob:
    ExtractChunk(chunk_id)
    return NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": chunk_id}, dedupe.extract_key(chunk_id))


def append_chunk_job(tree_id: str, chunk_id: str, source_id: str) -> NewJob:
    return NewJob(
        JobKind.APPEND_BUFFER,
        {"tree_id": tree_id, "level": 0, "item_id": chunk_id},
        dedupe.append_source_key(source_id, chunk_id),
    )


def append_summary_job(tree_id: str, level: int, summary_id: str) -> NewJob:
    return NewJob(
        JobKind.APPEND_BUFFER,
        {"tree_id": tree_id, "level": level, "item_id": summary_id},
        dedupe.append_topic_key(tree_id, summary_id),
    )


def seal_job(tree_id: str, level: int, *, force: bool = False) -> NewJob:
    payload: dict[str, Any] = {"tree_id": tree_id, "level": level}
    if force:
        payload["force"] = True
    return NewJob(JobKind.SEAL, payload, dedupe.seal_key(tree_id, level))


def flush_stale_job(now_ms: int, *, older_than_ms: int | None = None) -> NewJob:
    payload = {} if older_than_ms is None else {"older_than_ms": older_than_ms}
    return NewJob(JobKind.FLUSH_STALE, payload, dedupe.flush_stale_key(now_ms))


def reembed_backfill_job(model: str) -> NewJob:
    return NewJob(JobKind.REEMBED_BACKFILL, {"model": model}, dedupe.reembed_backfill_key(model))


def seal_document_job(tree_id: str, doc_id: str, version: str | None = None) -> NewJob:
    payload = {"tree_id": tree_id, "doc_id": doc_id}
    if version is not None:
        payload["version"] = version
    return NewJob(JobKind.SEAL_DOCUMENT, payload, dedupe.seal_document_key(doc_id, version))
