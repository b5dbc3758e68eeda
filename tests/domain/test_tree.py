"""Memory-tree payloads, job builders, sealing rules and the offline text models."""

from __future__ import annotations

import math
from typing import Any

import pytest

from memtasks.domain.errors import MalformedPayload
from memtasks.domain.jobs import JobKind
from memtasks.domain.text_models import HashingEmbedder, KeywordExtractor, LeadSentenceSummariser
from memtasks.domain.tree import (
    AppendBuffer,
    Seal,
    TreeConfig,
    append_chunk_job,
    append_summary_job,
    extract_chunk_job,
    flush_stale_job,
    reembed_backfill_job,
    seal_document_job,
    seal_job,
    should_force_seal,
    validate_payload,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("level", "count", "higher", "sealed"),
    [
        (0, 0, False, False),
        (0, 1, False, True),  # a lone chunk still gets a summary
        (3, 1, False, False),  # a lone summary at the top is the root
        (3, 1, True, True),  # a lone summary joins the items above it
        (3, 2, False, True),
        (0, 7, True, True),
    ],
)
def test_when_a_partial_buffer_is_sealed(level: int, count: int, higher: bool, sealed: bool) -> None:
    assert should_force_seal(level=level, count=count, higher_levels_hold_items=higher) is sealed


def test_builders_carry_the_specified_dedupe_keys() -> None:
    assert extract_chunk_job("c1").dedupe_key == "extract:c1"
    assert append_chunk_job("t", "c1", "src").dedupe_key == "append:source:src:c1"
    assert append_summary_job("t", 2, "sum:x").dedupe_key == "append:topic:t:sum:x"
    assert seal_job("t", 3, force=True).dedupe_key == "seal:t:3"
    assert seal_job("t", 3, force=True).payload == {"tree_id": "t", "level": 3, "force": True}
    assert flush_stale_job(1_767_225_600_000 + 4 * 3_600_000).dedupe_key == "flush_stale:2026-01-01-h1"
    assert reembed_backfill_job("hashing-64").dedupe_key == "reembed_backfill:hashing-64"
    assert seal_document_job("t", "d", "v2").dedupe_key == "seal_doc:d@v2"
    assert seal_document_job("t", "d").dedupe_key == "seal_doc:d"


def test_every_builder_payload_validates() -> None:
    for job in (
        extract_chunk_job("c1"),
        append_chunk_job("t", "c1", "src"),
        seal_job("t", 0),
        flush_stale_job(0, older_than_ms=5),
        reembed_backfill_job("m"),
        seal_document_job("t", "d"),
    ):
        validate_payload(job.kind, job.payload)


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (JobKind.EXTRACT_CHUNK, {"chunk_id": ""}, "'chunk_id' must be a non-empty string"),
        (JobKind.EXTRACT_CHUNK, {"chunk_id": "x" * 65}, "'chunk_id' is longer than 64"),
        (JobKind.APPEND_BUFFER, {"tree_id": "t", "level": True, "item_id": "i"}, "'level' must be a whole"),
        (JobKind.APPEND_BUFFER, {"tree_id": "t", "level": 65, "item_id": "i"}, "'level' must be a whole"),
        (JobKind.SEAL, {"tree_id": 5, "level": 0}, "'tree_id' must be a non-empty string"),
        (JobKind.REEMBED_BACKFILL, {"batch": 0}, "'batch' must be a positive"),
        (JobKind.SEAL_DOCUMENT, {"tree_id": "t", "doc_id": "d", "version": 2}, "'version' must be"),
    ],
)
def test_bad_payloads_name_the_field(kind: JobKind, payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        validate_payload(kind, payload)


def test_parsed_payloads() -> None:
    assert AppendBuffer.parse({"tree_id": "t", "level": 2, "item_id": "i"}) == AppendBuffer("t", 2, "i")
    assert Seal.parse({"tree_id": "t", "level": 0}).force is False


@pytest.mark.parametrize("kwargs", [{"fanout": 1}, {"stale_after_ms": -1}, {"reembed_batch": 0}])
def test_tree_config_bounds(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        TreeConfig(**kwargs)


def test_extractor_is_deterministic_and_skips_stopwords() -> None:
    text = "The team at Acme Corp shipped memtasks. The team celebrated; Acme Corp paid."
    found = KeywordExtractor().extract(text)
    assert found == KeywordExtractor().extract(text)
    assert found.entities == ("Acme Corp",)
    assert found.keywords[:2] == ("acme", "corp")
    assert "the" not in found.keywords


def test_summariser_keeps_lead_sentences_within_bounds() -> None:
    summariser = LeadSentenceSummariser(max_chars=60, max_sentence_chars=20)
    summary = summariser.summarise(2, ["First one. Second.", "A much longer lead sentence here. Tail."])
    assert summary.startswith("[L2] First one. A much longer lea")
    assert len(summary) <= 60
    assert summariser.summarise(1, ["x" * 500] * 10).endswith("…")


def test_hashing_embedder_is_unit_length_and_stable() -> None:
    embedder = HashingEmbedder(dimensions=32)
    [a, b] = embedder.embed(["memory tree", "memory tree"])
    assert a == b and len(a) == 32
    assert math.isclose(math.sqrt(sum(v * v for v in a)), 1.0, abs_tol=1e-5)
    assert embedder.embed([""]) == [[0.0] * 32]
    assert embedder.model == "hashing-32"
