"""Memory-tree job kinds, statuses, failure classes and the allowed transitions."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from memtasks.domain.clock import MAX_TIMESTAMP_MS
from memtasks.domain.errors import IllegalTransition, MalformedPayload, UnknownJobKind
from memtasks.domain.fairness import check_fair_key, lane_of
from memtasks.domain.lifecycle import ACTIVE, MEM_TREE_WORDS, TERMINAL, TRANSITIONS
from memtasks.domain.text import unstorable


class JobKind(StrEnum):
    """The memory-tree job kinds. The wire string is the value."""

    EXTRACT_CHUNK = "extract_chunk"
    APPEND_BUFFER = "append_buffer"
    SEAL = "seal"
    FLUSH_STALE = "flush_stale"
    REEMBED_BACKFILL = "reembed_backfill"
    SEAL_DOCUMENT = "seal_document"

    @classmethod
    def parse(cls, value: str) -> JobKind:
        """The kind named by ``value``; :class:`UnknownJobKind` naming it otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise UnknownJobKind(value) from None

    @property
    def priority(self) -> int:
        """Claim order: lower runs first (seal, flush_stale, append_buffer, the rest)."""
        return KIND_PRIORITY.get(self, DEFAULT_PRIORITY)

    @property
    def llm_bound(self) -> bool:
        """True for kinds that call a model and so hold a fleet-wide LLM permit."""
        return self in LLM_BOUND_KINDS


KIND_PRIORITY: Mapping[JobKind, int] = {
    JobKind.SEAL: 1,
    JobKind.FLUSH_STALE: 2,
    JobKind.APPEND_BUFFER: 3,
}
DEFAULT_PRIORITY = 4

LLM_BOUND_KINDS: frozenset[JobKind] = frozenset(
    {JobKind.EXTRACT_CHUNK, JobKind.SEAL, JobKind.REEMBED_BACKFILL, JobKind.SEAL_DOCUMENT}
)

RETIRED_KINDS: frozenset[str] = frozenset({"topic_route", "digest_daily"})
"""Kinds of an older queue: never claimed, purged."""


def is_retired_kind(kind: str) -> bool:
    return kind in RETIRED_KINDS


class JobStatus(StrEnum):
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def active(self) -> bool:
        """Active rows hold their dedupe key."""
        return self in ACTIVE_STATUSES


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(JobStatus(MEM_TREE_WORDS.word(p)) for p in TERMINAL)
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(JobStatus(MEM_TREE_WORDS.word(p)) for p in ACTIVE)

ALLOWED_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus(MEM_TREE_WORDS.word(current)): frozenset(JobStatus(MEM_TREE_WORDS.word(t)) for t in targets)
    for current, targets in TRANSITIONS.items()
}
"""The lifecycle's table (:data:`memtasks.domain.lifecycle.TRANSITIONS`) in this table's words."""


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current → target`` is allowed."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"job status {current.value} → {target.value} is not allowed")


class FailureClass(StrEnum):
    """Why a job failed: retrying helps (transient) or cannot (unrecoverable)."""

    TRANSIENT = "transient"
    UNRECOVERABLE = "unrecoverable"


# Stable failure reasons written by the queue itself.
REASON_RECOVERED = "recovered_from_stale_lock"
REASON_LEASE_EXHAUSTED = "lease_expired_attempts_exhausted"
REASON_DEFER_AGE = "defer_age_exceeded"
REASON_UNKNOWN_KIND = "unknown_kind"
REASON_MALFORMED = "malformed_payload"
REASON_ATTEMPTS_EXHAUSTED = "attempts_exhausted"

MAX_PAYLOAD_BYTES = 1_000_000
MAX_PAYLOAD_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (the top object is depth 1)."""
MAX_DEDUPE_KEY_CHARS = 512


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _render(path: tuple[str | int, ...]) -> str:
    return "payload" + "".join(f"[{step!r:.80}]" if isinstance(step, str) else f"[{step}]" for step in path)


def _check_json_tree(payload: Mapping[str, Any]) -> None:
    """Walk ``payload`` without recursion; :class:`MalformedPayload` naming the first value
    that is no JSON (wrong type, non-string key, NaN/infinity, lone surrogate), nests deeper
    than :data:`MAX_PAYLOAD_DEPTH`, or once the text would exceed :data:`MAX_PAYLOAD_BYTES`."""
    stack: list[tuple[tuple[str | int, ...], object]] = [((), payload)]
    size = 0  # a lower bound of the encoded size: every value and character takes a byte
    while stack:
        path, value = stack.pop()
        size += 1
        if isinstance(value, str):
            size += len(value)
            if _has_lone_surrogate(value):
                raise MalformedPayload(f"{_render(path)} contains a lone surrogate (not valid UTF-8)")
        elif value is None or isinstance(value, bool | int):
            pass
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise MalformedPayload(f"not JSON-serialisable: {_render(path)} is {value!r}")
        elif isinstance(value, Mapping | list | tuple):
            if len(path) + 1 > MAX_PAYLOAD_DEPTH:
                raise MalformedPayload(
                    f"not JSON-serialisable: {_render(path[:8])}… is nested deeper than "
                    f"{MAX_PAYLOAD_DEPTH} levels"
                )
            if size + len(value) > MAX_PAYLOAD_BYTES:  # each item takes at least a byte
                raise MalformedPayload(f"larger than {MAX_PAYLOAD_BYTES} bytes")
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise MalformedPayload(
                            f"not JSON-serialisable: {_render(path)} has a non-string key {key!r:.80}"
                        )
                    if _has_lone_surrogate(key):
                        raise MalformedPayload(
                            f"{_render(path)} has a key with a lone surrogate (not valid UTF-8)"
                        )
                    size += len(key)
                    stack.append(((*path, key), item))
            else:
                stack.extend(((*path, i), item) for i, item in enumerate(value))
        else:
            raise MalformedPayload(f"not JSON-serialisable: {_render(path)} is a {type(value).__name__}")
        if size > MAX_PAYLOAD_BYTES:
            raise MalformedPayload(f"larger than {MAX_PAYLOAD_BYTES} bytes")


def encode_payload(payload: Mapping[str, Any]) -> str:
    """Canonical JSON text for a payload; :class:`MalformedPayload` when it cannot be.

    Free-form values may hold any JSON text (a NUL character is stored escaped as
    ``\\u0000``); lone surrogates, NaN/infinity, non-string keys, nesting deeper than
    :data:`MAX_PAYLOAD_DEPTH` and text over :data:`MAX_PAYLOAD_BYTES` are refused.
    """
    if not isinstance(payload, Mapping):
        raise MalformedPayload(f"expected a JSON object, got {type(payload).__name__}")
    if any(not isinstance(key, str) for key in payload):
        raise MalformedPayload("object keys must be strings")
    _check_json_tree(payload)
    try:
        text = json.dumps(
            dict(payload), sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedPayload(f"not JSON-serialisable: {exc}") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise MalformedPayload(f"larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedPayload("contains text that is not valid UTF-8") from None
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_payload(text: str | None) -> dict[str, Any]:
    """The payload object stored as ``text``; :class:`MalformedPayload` otherwise."""
    if text is None:
        raise MalformedPayload("payload is missing")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedPayload(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedPayload(f"expected a JSON object, got {type(value).__name__}")
    return value


def check_dedupe_key(key: str | None) -> str | None:
    """A dedupe key must be a non-empty string of bounded length, or None."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise MalformedPayload("dedupe_key must be a non-empty string or null")
    if len(key) > MAX_DEDUPE_KEY_CHARS:
        raise MalformedPayload(f"dedupe_key longer than {MAX_DEDUPE_KEY_CHARS} characters")
    problem = unstorable(key)
    if problem is not None:
        raise MalformedPayload(f"dedupe_key {problem}")
    return key


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue. Validated on construction."""

    kind: JobKind
    payload: Mapping[str, Any]
    dedupe_key: str | None = None
    available_at_ms: int | None = None
    max_attempts: int | None = None
    fair_key: str | None = None
    """The job's lane for fair share (its agent or tenant); None: the payload's ``agent_id`` or
    ``tenant_id``, else the shared lane (:mod:`memtasks.domain.fairness`)."""
    payload_json: str = field(init=False, repr=False, compare=False)

    @property
    def lane(self) -> str:
        """The job's lane for fair share."""
        return lane_of(self.payload, self.fair_key)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JobKind.parse(str(self.kind)))
        # Encoded once: later changes to the caller's dict cannot bypass validation.
        object.__setattr__(self, "payload_json", encode_payload(self.payload))
        check_dedupe_key(self.dedupe_key)
        if self.fair_key is not None:
            check_fair_key(self.fair_key)
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100
        ):
            raise MalformedPayload("max_attempts must be a whole number between 1 and 100")
        at = self.available_at_ms
        if at is not None and (
            isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= MAX_TIMESTAMP_MS
        ):
            raise MalformedPayload(f"available_at_ms must be Unix milliseconds from 0 to {MAX_TIMESTAMP_MS}")


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of a claim: a settle is applied only while this lease still holds the row.

    ``attempt`` and ``max_attempts`` are the row's counts as the claim left them; nobody but
    the lease holder changes them while the lease holds, so a failed settle decides its
    retry from them without reading the row again.
    """

    job_id: str
    token: str
    attempt: int = 1
    max_attempts: int = 1
