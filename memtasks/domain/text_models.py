"""Plug-ins the memory tree calls: extractor, summariser, embedder.

The defaults are deterministic and need nothing beyond the standard library, so the
whole pipeline runs offline and its results can be compared byte for byte. A deployment
swaps in model-backed implementations of the same protocols.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_ENTITY = re.compile(r"\b[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")

_STOPWORD_TEXT = """
a about after all also an and any are as at be been but by can could did do does for from had has
have he her his how i if in into is it its just me more my no not of on or our out she so than that
the their them then there these they this to up us was we were what when which who will with would
you your
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class Extraction:
    entities: tuple[str, ...]
    keywords: tuple[str, ...]


class Extractor(Protocol):
    def extract(self, text: str) -> Extraction:
        """Entities and keywords of ``text``."""
        ...


class Summariser(Protocol):
    def summarise(self, level: int, texts: Sequence[str]) -> str:
        """One summary of ``texts`` (the children, in order) for a node at ``level``."""
        ...


class Embedder(Protocol):
    @property
    def model(self) -> str:
        """A signature of the model: rows embedded by another model are embedded again."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        ...


@dataclass(frozen=True, slots=True)
class KeywordExtractor:
    """Capitalised phrases as entities, the most frequent content words as keywords."""

    max_entities: int = 16
    max_keywords: int = 8

    def extract(self, text: str) -> Extraction:
        entities: dict[str, None] = {}
        for match in _ENTITY.finditer(text):
            phrase = match.group(0)
            if phrase.lower() not in STOPWORDS:
                entities.setdefault(phrase)
        words = [w.lower() for w in _WORD.findall(text)]
        counts = Counter(w for w in words if len(w) > 2 and w not in STOPWORDS)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return Extraction(
            entities=tuple(list(entities)[: self.max_entities]),
            keywords=tuple(word for word, _ in ranked[: self.max_keywords]),
        )


@dataclass(frozen=True, slots=True)
class LeadSentenceSummariser:
    """The first sentence of each child, in order, within ``max_chars``."""

    max_chars: int = 2_000
    max_sentence_chars: int = 240

    def summarise(self, level: int, texts: Sequence[str]) -> str:
        leads = []
        for text in texts:
            first = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
            if len(first) > self.max_sentence_chars:
                first = first[: self.max_sentence_chars - 1] + "…"
            if first:
                leads.append(first)
        summary = f"[L{level}] " + " ".join(leads)
        return summary if len(summary) <= self.max_chars else summary[: self.max_chars - 1] + "…"


@dataclass(frozen=True, slots=True)
class HashingEmbedder:
    """Feature hashing of words into ``dimensions`` buckets, L2-normalised, 6 decimals."""

    dimensions: int = 64
    name: str = field(default="hashing")

    @property
    def model(self) -> str:
        return f"{self.name}-{self.dimensions}"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dimensions
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "big") % self.dimensions
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            return vector
        return [round(v / norm, 6) for v in vector]


@dataclass(frozen=True, slots=True)
class TextModels:
    """The three plug-ins a memory-tree handler may call."""

    extractor: Extractor = field(default_factory=KeywordExtractor)
    summariser: Summariser = field(default_factory=LeadSentenceSummariser)
    embedder: Embedder = field(default_factory=HashingEmbedder)
