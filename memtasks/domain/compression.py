"""Deterministic compression of decay sources (memories or episodes) into one summary.

Pure and stdlib only. The same sources and policy always give a byte-identical
:class:`Summary`: the claim is the sources' texts in source order joined by the policy's
separator and cut at a byte limit (never inside a UTF-8 character) with a suffix; the
confidence is the lowest; the authority is the least trusted one in the policy's explicit
trust order; provenance and domains are de-duplicated unions in first-seen order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from memtasks.domain.decay import CODE_SOURCE_KIND_MISMATCH, CODE_SOURCE_MISSING
from memtasks.domain.errors import ValidationError

CODE_SOURCE_DUPLICATE = "decay.compress.source_duplicate"
CODE_UNKNOWN_AUTHORITY = "decay.compress.unknown_authority"
CODE_BAD_CONFIDENCE = "decay.compress.bad_confidence"
CODE_EMPTY_SUMMARY = "decay.compress.empty_summary"
CODE_BAD_POLICY = "decay.compress.bad_policy"

SUMMARY_MEMORY_TYPE = "summary"
SUMMARY_STATUS = "candidate"

DEFAULT_TRUST_ORDER: tuple[str, ...] = (
    "operator",
    "verified",
    "user",
    "agent",
    "candidate",
    "derived",
    "untrusted",
)
"""Authorities from most to least trusted; a summary gets its least trusted source's."""


class SourceKind(StrEnum):
    """What a decay job compresses; the value is the supersession edge's ``source_kind``."""

    MEMORY = "memory"
    EPISODE = "episode"

    @property
    def id_prefix(self) -> str:
        return "mem_" if self is SourceKind.MEMORY else "ep_"


def source_kind_of(source_ids: Sequence[str]) -> SourceKind:
    """The one kind that every id names (``mem_…`` or ``ep_…``).

    Empty → ``decay.compress.source_missing``; ids of two kinds, or of no known kind →
    ``decay.compress.source_kind_mismatch``; an id twice → ``decay.compress.source_duplicate``.
    """
    if not source_ids:
        raise ValidationError("compression needs at least one source id", code=CODE_SOURCE_MISSING)
    kinds: set[SourceKind] = set()
    for source_id in source_ids:
        kind = next((k for k in SourceKind if source_id.startswith(k.id_prefix)), None)
        if kind is None:
            raise ValidationError(
                f"source id {source_id!r} is neither mem_… nor ep_…", code=CODE_SOURCE_KIND_MISMATCH
            )
        kinds.add(kind)
    if len(kinds) > 1:
        raise ValidationError(
            "source ids mix memories (mem_…) and episodes (ep_…)", code=CODE_SOURCE_KIND_MISMATCH
        )
    seen: set[str] = set()
    for source_id in source_ids:
        if source_id in seen:
            raise ValidationError(f"source id {source_id} is listed twice", code=CODE_SOURCE_DUPLICATE)
        seen.add(source_id)
    return kinds.pop()


@dataclass(frozen=True, slots=True)
class Source:
    """One memory (its claim) or episode (its summary text) to compress."""

    id: str
    kind: SourceKind
    text: str
    confidence: float
    authority: str
    domains: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompressionPolicy:
    """How a claim is joined and cut, and which authorities are known, most trusted first."""

    separator: str = "\n"
    max_claim_bytes: int = 4096
    truncation_suffix: str = " …[truncated]"
    trust_order: tuple[str, ...] = field(default=DEFAULT_TRUST_ORDER)

    def __post_init__(self) -> None:
        suffix_bytes = len(self.truncation_suffix.encode("utf-8"))
        if self.max_claim_bytes <= suffix_bytes:
            raise ValidationError(
                f"max_claim_bytes ({self.max_claim_bytes}) must exceed the suffix's {suffix_bytes} bytes",
                code=CODE_BAD_POLICY,
            )
        if not self.trust_order or len(set(self.trust_order)) != len(self.trust_order):
            raise ValidationError("trust_order must list distinct authorities", code=CODE_BAD_POLICY)

    def trust_rank(self, authority: str) -> int:
        """0 for the most trusted; :class:`ValidationError` for an authority not in the order."""
        try:
            return self.trust_order.index(authority)
        except ValueError:
            raise ValidationError(
                f"unknown authority {authority!r} (known: {', '.join(self.trust_order)})",
                code=CODE_UNKNOWN_AUTHORITY,
            ) from None


@dataclass(frozen=True, slots=True)
class Summary:
    """The memory a compression produces, before it has an id or timestamps."""

    claim: str
    confidence: float
    authority: str
    domains: tuple[str, ...]
    provenance: tuple[str, ...]
    source_kind: SourceKind
    source_ids: tuple[str, ...]
    memory_type: str = SUMMARY_MEMORY_TYPE
    status: str = SUMMARY_STATUS


def cut_utf8(text: str, max_bytes: int, suffix: str) -> str:
    """``text`` if it fits in ``max_bytes`` of UTF-8, else its longest prefix + ``suffix`` that does.

    Never splits a character: the prefix ends on a character boundary.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    budget = max_bytes - len(suffix.encode("utf-8"))
    if budget < 0:
        raise ValidationError("the suffix alone exceeds the byte limit", code=CODE_BAD_POLICY)
    # errors="ignore" drops only the trailing bytes of a character cut in half.
    return encoded[:budget].decode("utf-8", errors="ignore") + suffix


def order_sources(requested: Sequence[str], found: Mapping[str, Source]) -> tuple[Source, ...]:
    """The found sources in requested order; ``decay.compress.source_missing`` naming any absent."""
    missing = [source_id for source_id in requested if source_id not in found]
    if missing:
        raise ValidationError(
            f"{CODE_SOURCE_MISSING}: source(s) not found: {', '.join(missing)}", code=CODE_SOURCE_MISSING
        )
    return tuple(found[source_id] for source_id in requested)


def compress(sources: Sequence[Source], policy: CompressionPolicy | None = None) -> Summary:
    """Concatenate the sources' texts in order into one summary (see the module docstring)."""
    policy = policy or CompressionPolicy()
    _check_sources(sources)
    claim = policy.separator.join(s.text for s in sources)
    return _summary(sources, claim, policy)


def summarise_with(sources: Sequence[Source], text: str, policy: CompressionPolicy | None = None) -> Summary:
    """A summary whose claim is ``text`` (e.g. a model's), with the same metadata rules as
    :func:`compress`. An empty or blank text → ``decay.compress.empty_summary``."""
    policy = policy or CompressionPolicy()
    _check_sources(sources)
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("the summary text is empty", code=CODE_EMPTY_SUMMARY)
    return _summary(sources, text, policy)


def _check_sources(sources: Sequence[Source]) -> None:
    kind = source_kind_of([s.id for s in sources])
    for s in sources:
        if s.kind is not kind:
            raise ValidationError(
                f"source {s.id} is a {s.kind.value}, not a {kind.value}", code=CODE_SOURCE_KIND_MISMATCH
            )
        if not 0.0 <= s.confidence <= 1.0:
            raise ValidationError(
                f"source {s.id} has confidence {s.confidence} outside [0, 1]", code=CODE_BAD_CONFIDENCE
            )


def _summary(sources: Sequence[Source], claim: str, policy: CompressionPolicy) -> Summary:
    least_trusted = max(sources, key=lambda s: policy.trust_rank(s.authority))
    return Summary(
        claim=cut_utf8(claim, policy.max_claim_bytes, policy.truncation_suffix),
        confidence=min(s.confidence for s in sources),
        authority=least_trusted.authority,
        domains=_union(s.domains for s in sources),
        provenance=_union(s.provenance for s in sources),
        source_kind=sources[0].kind,
        source_ids=tuple(s.id for s in sources),
    )


def _union(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for group in groups for item in group))
