"""Retrieval failures: the record a recall path logs when memory retrieval comes up short.

The record is validated and truncated when it is made, so whatever reaches the logger's
queue is already bounded in size and fits the table (`memory_retrieval_failures`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from memtasks.domain.clock import DAY_MS, MAX_TIMESTAMP_MS
from memtasks.domain.errors import ValidationError

QUERY_TEXT_MAX_CHARS = 512
ERROR_CONTEXT_MAX_CHARS = 256
STRATEGY_MAX_CHARS = 64
CONVERSATION_ID_MAX_CHARS = 64
INT32_MAX = 2**31 - 1
DEFAULT_RETENTION_MS = 90 * DAY_MS

# Stable error codes.
CODE_UNKNOWN_TYPE = "retrieval.failure_type.unknown"
CODE_INVALID = "retrieval.record.invalid"
CODE_RETENTION = "retrieval.retention.invalid"

_REPLACEMENT = "\ufffd"


class FailureType(StrEnum):
    NO_HIT = "no_hit"
    LOW_CONFIDENCE = "low_confidence"
    TIMEOUT = "timeout"
    ERROR = "error"


def parse_failure_type(value: FailureType | str) -> FailureType:
    """The failure type named by ``value``; :class:`ValidationError` when it is unknown."""
    try:
        return FailureType(value)
    except ValueError:
        expected = ", ".join(t.value for t in FailureType)
        raise ValidationError(
            f"unknown failure type {value!r} (expected one of {expected})", code=CODE_UNKNOWN_TYPE
        ) from None


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (a lone surrogate counts as its 3-byte encoding)."""
    return len(text.encode("utf-8", "surrogatepass"))


def truncate_chars(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (code points)."""
    return text if len(text) <= limit else text[:limit]


def storable_text(text: str) -> str:
    """``text`` with what no database text column accepts (NUL, lone surrogates) replaced.

    The replacement is one character for one, so lengths in characters are kept.
    """
    if "\x00" in text:
        text = text.replace("\x00", _REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join(_REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def retention_cutoff(now_ms: int, retention_ms: int) -> int:
    """The instant before which records are past retention (rows strictly older are purged)."""
    if isinstance(retention_ms, bool) or not isinstance(retention_ms, int) or retention_ms <= 0:
        raise ValidationError(
            f"retention must be a positive number of milliseconds, got {retention_ms!r}",
            code=CODE_RETENTION,
        )
    return now_ms - retention_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrievalFailure:
    """One retrieval failure, validated and truncated on construction.

    ``query_len`` is the byte length (UTF-8) of the *original* query; ``query_text`` keeps
    at most 512 characters of it and ``error_context`` at most 256. ``created_at_ms`` may
    be left ``None``: the logger stamps it with its clock when the record is logged.
    Build records with :meth:`new`, which measures ``query_len`` for you.
    """

    failure_type: FailureType
    retrieval_strategy: str
    query_text: str
    query_len: int
    conversation_id: str | None = None
    turn_index: int = 0
    top_score: float | None = None
    confidence_threshold: float | None = None
    result_count: int = 0
    latency_ms: int = 0
    edge_types: tuple[str, ...] = ()
    error_context: str | None = None
    created_at_ms: int | None = None

    def __post_init__(self) -> None:
        _set = object.__setattr__
        _set(self, "failure_type", parse_failure_type(self.failure_type))
        _set(self, "retrieval_strategy", _name("retrieval_strategy", self.retrieval_strategy))
        if self.conversation_id is not None:
            _set(self, "conversation_id", _name("conversation_id", self.conversation_id))
        for field in ("query_len", "turn_index", "result_count", "latency_ms"):
            _count(field, getattr(self, field))
        if self.created_at_ms is not None:
            _integer("created_at_ms", self.created_at_ms, upper=MAX_TIMESTAMP_MS)
        for field in ("top_score", "confidence_threshold"):
            _set(self, field, _score(field, getattr(self, field)))
        if not isinstance(self.query_text, str):
            raise _invalid(f"query_text must be a string, got {type(self.query_text).__name__}")
        kept = truncate_chars(self.query_text, QUERY_TEXT_MAX_CHARS)
        # Each character of the kept prefix (replaced or not) stands for at least one byte of
        # the original query: a cheap bound that re-validation (``stamped``) still meets.
        if self.query_len < len(kept):
            raise _invalid(
                f"query_len {self.query_len} is less than the {len(kept)} characters of the query "
                "text (query_len counts the bytes of the original query)"
            )
        _set(self, "query_text", storable_text(kept))
        if self.error_context is not None:
            if not isinstance(self.error_context, str):
                raise _invalid("error_context must be a string or None")
            _set(
                self,
                "error_context",
                storable_text(truncate_chars(self.error_context, ERROR_CONTEXT_MAX_CHARS)),
            )
        _set(self, "edge_types", _edge_types(self.edge_types))

    @classmethod
    def new(
        cls,
        failure_type: FailureType | str,
        retrieval_strategy: str,
        query: str,
        *,
        conversation_id: str | None = None,
        turn_index: int = 0,
        top_score: float | None = None,
        confidence_threshold: float | None = None,
        result_count: int = 0,
        latency_ms: int = 0,
        edge_types: Iterable[str] = (),
        error_context: str | None = None,
        created_at_ms: int | None = None,
    ) -> RetrievalFailure:
        """A record of ``query``: its byte length is measured before it is truncated."""
        if not isinstance(query, str):
            raise _invalid(f"query must be a string, got {type(query).__name__}")
        return cls(
            failure_type=parse_failure_type(failure_type),
            retrieval_strategy=retrieval_strategy,
            query_text=query,
            query_len=utf8_len(query),
            conversation_id=conversation_id,
            turn_index=turn_index,
            top_score=top_score,
            confidence_threshold=confidence_threshold,
            result_count=result_count,
            latency_ms=latency_ms,
            edge_types=_edge_types(edge_types),
            error_context=error_context,
            created_at_ms=created_at_ms,
        )

    def to_wire(self) -> dict[str, object]:
        """A JSON-ready dict (the Celery sink sends batches of these)."""
        wire = dataclasses.asdict(self)
        wire["failure_type"] = self.failure_type.value
        wire["edge_types"] = list(self.edge_types)
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> RetrievalFailure:
        """A record from :meth:`to_wire` output; :class:`ValidationError` naming what is wrong."""
        if not isinstance(wire, dict):
            raise _invalid(f"a retrieval failure must be a JSON object, got {type(wire).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in wire if k not in known)
        if unknown:
            raise _invalid(f"unknown retrieval-failure fields: {', '.join(unknown)}")
        missing = sorted({"failure_type", "retrieval_strategy", "query_text", "query_len"} - set(wire))
        if missing:
            raise _invalid(f"missing retrieval-failure fields: {', '.join(missing)}")
        fields = dict(wire)
        if isinstance(fields.get("edge_types"), list):
            fields["edge_types"] = tuple(fields["edge_types"])
        return cls(**fields)

    def stamped(self, at_ms: int) -> RetrievalFailure:
        """This record with ``created_at_ms`` set (unchanged when it already has one)."""
        if self.created_at_ms is not None:
            return self
        return dataclasses.replace(self, created_at_ms=at_ms)


def _invalid(message: str) -> ValidationError:
    return ValidationError(f"invalid retrieval failure: {message}", code=CODE_INVALID)


def _name(field: str, value: object) -> str:
    limit = STRATEGY_MAX_CHARS if field == "retrieval_strategy" else CONVERSATION_ID_MAX_CHARS
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{field} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise _invalid(f"{field} is {len(value)} characters long; at most {limit} fit the table")
    if storable_text(value) != value:
        raise _invalid(f"{field} contains NUL or a lone surrogate")
    return value


def _integer(field: str, value: object, *, upper: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{field} must be an integer, got {value!r}")
    if value < 0:
        raise _invalid(f"{field} must not be negative, got {value}")
    if upper is not None and value > upper:
        raise _invalid(f"{field} {value} is larger than {upper}")
    return value


def _count(field: str, value: object) -> int:
    return _integer(field, value, upper=INT32_MAX)


def _score(field: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{field} must be a number or None, got {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        raise _invalid(f"{field} must be finite, got an integer beyond the float range") from None
    if not math.isfinite(number):
        raise _invalid(f"{field} must be finite, got {value!r}")
    return number


def _edge_types(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _invalid(f"edge_types must be a list of strings, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise _invalid(f"edge_types must hold non-empty strings, got {item!r}")
    return items
