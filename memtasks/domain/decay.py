"""Decay jobs: kinds, summary methods, the state machine and row validation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from memtasks.domain.clock import MAX_TIMESTAMP_MS
from memtasks.domain.errors import IllegalTransition, ValidationError
from memtasks.domain.lifecycle import DECAY_WORDS, TERMINAL, TRANSITIONS
from memtasks.domain.text import shorten, unstorable


class DecayKind(StrEnum):
    CANDIDATE_COMPRESSION = "candidate_compression"
    EPISODE_COMPRESSION = "episode_compression"
    EXPIRED_PRINCIPLE_REVIEW = "expired_principle_review"

    @property
    def priority(self) -> int:
        """Claim and message order within a queue (lower first): :data:`DECAY_PRIORITY`."""
        return DECAY_PRIORITY[self]


class SummaryMethod(StrEnum):
    DETERMINISTIC_CONCATENATE = "deterministic_concatenate"
    LLM_SUMMARY = "llm_summary"


class DecayState(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in DECAY_TERMINAL


DECAY_TERMINAL: frozenset[DecayState] = frozenset(DecayState(DECAY_WORDS.word(p)) for p in TERMINAL)

DECAY_TRANSITIONS: Mapping[DecayState, frozenset[DecayState]] = {
    DecayState(DECAY_WORDS.word(current)): frozenset(DecayState(DECAY_WORDS.word(t)) for t in targets)
    for current, targets in TRANSITIONS.items()
}
"""The lifecycle's table (:data:`memtasks.domain.lifecycle.TRANSITIONS`) in the seed's words."""


def check_decay_transition(current: DecayState, target: DecayState) -> None:
    if target not in DECAY_TRANSITIONS[current]:
        raise IllegalTransition(f"decay state {current.value} → {target.value} is not allowed")


# Stable invariant codes.
CODE_NOT_FOUND = "decay.job.not_found"
CODE_MALFORMED = "decay.job.malformed"
CODE_IN_PROGRESS = "decay.job.in_progress"
CODE_SOURCE_MISSING = "decay.compress.source_missing"
CODE_SOURCE_KIND_MISMATCH = "decay.compress.source_kind_mismatch"
CODE_RUNNER_FAILURE = "decay.runner.failure"
CODE_LEASE_EXHAUSTED = "decay.runner.lease_expired"
CODE_CANCELLED = "decay.job.cancelled"

MAX_SOURCE_ID_CHARS = 64
"""A source id names a memory, an episode or a principle (64-character id columns)."""
MAX_SOURCE_IDS = 1_000
MAX_CREATED_BY_CHARS = 128


def check_created_by(value: object) -> str:
    """Who asked for a decay job: a non-blank string a 128-character column can hold."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"created_by must name who asked for the job, got {shorten(value)}", code=CODE_MALFORMED
        )
    if len(value) > MAX_CREATED_BY_CHARS:
        raise ValidationError(
            f"created_by is longer than {MAX_CREATED_BY_CHARS} characters", code=CODE_MALFORMED
        )
    problem = unstorable(value)
    if problem is not None:
        raise ValidationError(f"created_by {problem}", code=CODE_MALFORMED)
    return value


def check_scheduled_for_ms(value: object, *, code: str = CODE_MALFORMED) -> int | None:
    """When a decay job is due: ``None`` (now) or Unix milliseconds from 0 to the clock's limit."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMESTAMP_MS
    ):
        raise ValidationError(
            f"scheduled_for_ms must be Unix milliseconds from 0 to {MAX_TIMESTAMP_MS}, got {shorten(value)}",
            code=code,
        )
    return value


DECAY_PRIORITY: Mapping[DecayKind, int] = {
    DecayKind.CANDIDATE_COMPRESSION: 4,
    DecayKind.EXPIRED_PRINCIPLE_REVIEW: 4,
    DecayKind.EPISODE_COMPRESSION: 5,
}
"""Claim and message order within a queue, on the memory-tree kinds' scale (seal 1 … the rest 4):
candidate memories are what retrieval reads today; old episodes can wait behind them."""


SOURCE_PREFIX: Mapping[DecayKind, str] = {
    DecayKind.CANDIDATE_COMPRESSION: "mem_",
    DecayKind.EPISODE_COMPRESSION: "ep_",
    DecayKind.EXPIRED_PRINCIPLE_REVIEW: "",
}


def failure_reason(code: str | None, message: str | None) -> str:
    """The reason a failed job records: its invariant code, else its message, else a marker."""
    for candidate in (code, message):
        if candidate is not None and candidate.strip():
            return candidate
    return CODE_RUNNER_FAILURE


@dataclass(frozen=True, slots=True)
class DecaySpec:
    """A decay job's typed definition, validated on construction."""

    kind: DecayKind
    source_ids: tuple[str, ...]
    method: SummaryMethod = SummaryMethod.DETERMINISTIC_CONCATENATE
    attestation_required: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", DecayKind(self.kind))
            object.__setattr__(self, "method", SummaryMethod(self.method))
        except ValueError as exc:
            raise ValidationError(str(exc), code=CODE_MALFORMED) from None
        if isinstance(self.source_ids, str | bytes) or not isinstance(self.source_ids, Sequence):
            raise ValidationError(
                f"source ids must be a list of ids, got {shorten(self.source_ids)}", code=CODE_MALFORMED
            )
        ids = tuple(self.source_ids)
        object.__setattr__(self, "source_ids", ids)
        if not ids:
            raise ValidationError("a decay job needs at least one source id", code=CODE_SOURCE_MISSING)
        if len(ids) > MAX_SOURCE_IDS:
            raise ValidationError(
                f"a decay job takes at most {MAX_SOURCE_IDS} source ids", code=CODE_MALFORMED
            )
        if any(not isinstance(i, str) or not i for i in ids):
            raise ValidationError("source ids must be non-empty strings", code=CODE_MALFORMED)
        for source_id in ids:
            problem = unstorable(source_id)
            if problem is not None:
                raise ValidationError(f"source id {shorten(source_id)} {problem}", code=CODE_MALFORMED)
            if len(source_id) > MAX_SOURCE_ID_CHARS:
                raise ValidationError(
                    f"source id {shorten(source_id)} is longer than {MAX_SOURCE_ID_CHARS} characters",
                    code=CODE_MALFORMED,
                )
        if self.kind is DecayKind.EXPIRED_PRINCIPLE_REVIEW:
            if len(ids) != 1:
                raise ValidationError(
                    "expired_principle_review takes exactly one principle id", code=CODE_MALFORMED
                )
            if self.method is SummaryMethod.LLM_SUMMARY:
                raise ValidationError("expired_principle_review has no summary method", code=CODE_MALFORMED)
        prefix = SOURCE_PREFIX[self.kind]
        if prefix and any(not i.startswith(prefix) for i in ids):
            raise ValidationError(
                f"{self.kind.value} takes only {prefix}… ids", code=CODE_SOURCE_KIND_MISMATCH
            )

    @property
    def priority(self) -> int:
        return DECAY_PRIORITY[self.kind]

    @property
    def needs_operator(self) -> bool:
        """LLM summaries run only when an operator fires them with an attestation."""
        return self.method is SummaryMethod.LLM_SUMMARY

    def source_ids_json(self) -> str:
        return json.dumps(list(self.source_ids))

    @classmethod
    def from_row(cls, kind: str, source_ids_json: str, method: str, attestation_required: bool) -> DecaySpec:
        """Parse stored columns; :class:`ValidationError` (``decay.job.malformed``) otherwise."""
        try:
            ids = json.loads(source_ids_json)
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValidationError(f"source ids are not JSON: {exc}", code=CODE_MALFORMED) from None
        if not isinstance(ids, list):
            raise ValidationError("source ids are not a JSON list", code=CODE_MALFORMED)
        return cls(_as_kind(kind), tuple(_as_ids(ids)), _as_method(method), attestation_required)


def _as_kind(value: str) -> DecayKind:
    try:
        return DecayKind(value)
    except ValueError:
        raise ValidationError(f"unknown decay kind {value!r}", code=CODE_MALFORMED) from None


def _as_method(value: str) -> SummaryMethod:
    try:
        return SummaryMethod(value)
    except ValueError:
        raise ValidationError(f"unknown summary method {value!r}", code=CODE_MALFORMED) from None


def _as_ids(values: Sequence[object]) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise ValidationError("source ids must be strings", code=CODE_MALFORMED)
    return [str(v) for v in values]
