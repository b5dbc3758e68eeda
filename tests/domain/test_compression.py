"""Deterministic compression: order, byte cut, metadata rules and input errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtasks.domain.compression import (
    CompressionPolicy,
    Source,
    SourceKind,
    compress,
    cut_utf8,
    order_sources,
    source_kind_of,
    summarise_with,
)
from memtasks.domain.errors import ValidationError

pytestmark = pytest.mark.unit


def mem(
    n: int,
    text: str,
    *,
    confidence: float = 0.8,
    authority: str = "user",
    domains: tuple[str, ...] = (),
    provenance: tuple[str, ...] = (),
) -> Source:
    return Source(f"mem_{n}", SourceKind.MEMORY, text, confidence, authority, domains, provenance)


def sources() -> list[Source]:
    """A fresh, equal list on every call."""
    return [
        mem(1, "alpha", confidence=0.9, authority="verified", domains=("t", "u"), provenance=("evt_1",)),
        mem(
            2, "béta ✓", confidence=0.4, authority="agent", domains=("u", "v"), provenance=("evt_2", "evt_1")
        ),
        mem(3, "gamma", confidence=0.7, authority="user", domains=("t",), provenance=("evt_3",)),
    ]


def test_claim_is_the_texts_in_source_order_and_metadata_follows_the_rules() -> None:
    summary = compress(sources())
    assert summary.claim == "alpha\nbéta ✓\ngamma"
    assert summary.confidence == 0.4
    assert summary.authority == "agent", "the least trusted of verified, agent, user"
    assert summary.domains == ("t", "u", "v")
    assert summary.provenance == ("evt_1", "evt_2", "evt_3")
    assert (summary.memory_type, summary.status) == ("summary", "candidate")
    assert summary.source_ids == ("mem_1", "mem_2", "mem_3")
    assert summary.source_kind is SourceKind.MEMORY
    reversed_summary = compress(list(reversed(sources())))
    assert reversed_summary.claim == "gamma\nbéta ✓\nalpha"


def test_same_input_gives_a_byte_identical_summary() -> None:
    policy = CompressionPolicy(max_claim_bytes=20)
    first, second = compress(sources(), policy), compress(sources(), CompressionPolicy(max_claim_bytes=20))
    assert first.claim == "alpha …[truncated]"
    for f in dataclasses.fields(first):
        assert getattr(first, f.name) == getattr(second, f.name), f.name
        assert repr(getattr(first, f.name)).encode() == repr(getattr(second, f.name)).encode(), f.name
    assert first.claim.encode("utf-8") == second.claim.encode("utf-8")
    assert first == second


def test_the_cut_keeps_within_the_limit_and_never_splits_a_character() -> None:
    policy = CompressionPolicy(max_claim_bytes=21, truncation_suffix="…")
    summary = compress([mem(1, "ab"), mem(2, "ééééééééééé")], policy)
    encoded = summary.claim.encode("utf-8")
    assert len(encoded) == 20, "18 bytes of budget: the 8th é would need a 19th"
    assert summary.claim == "ab\nééééééé…", "a 2-byte é that does not fit whole is dropped"


def test_a_claim_that_fits_is_not_cut() -> None:
    assert cut_utf8("hello", 5, "…") == "hello"
    assert cut_utf8("hello!", 5, "~") == "hell~"


@given(
    text=st.text(alphabet=st.sampled_from("aé✓𝄞\n "), max_size=60),
    limit=st.integers(min_value=4, max_value=80),
)
def test_cut_utf8_property(text: str, limit: int) -> None:
    suffix = "…"
    out = cut_utf8(text, limit, suffix)
    assert len(out.encode("utf-8")) <= limit
    if len(text.encode("utf-8")) <= limit:
        assert out == text
    else:
        prefix = out[: -len(suffix)]
        assert out.endswith(suffix)
        assert text.startswith(prefix), "a prefix of whole characters"
        next_char = text[len(prefix)]
        assert len((prefix + next_char + suffix).encode("utf-8")) > limit, "the longest prefix that fits"


def test_episodes_compress_by_their_summary_text() -> None:
    eps = [
        Source("ep_1", SourceKind.EPISODE, "met Bob", 0.6, "user", ("social",), ("evt_9",)),
        Source("ep_2", SourceKind.EPISODE, "Bob likes tea", 0.5, "candidate", ("social",), ()),
    ]
    summary = compress(eps)
    assert summary.claim == "met Bob\nBob likes tea"
    assert summary.source_kind is SourceKind.EPISODE
    assert (summary.confidence, summary.authority) == (0.5, "candidate")
    assert summary.domains == ("social",)


@pytest.mark.parametrize(
    ("ids", "code"),
    [
        ([], "decay.compress.source_missing"),
        (["mem_1", "ep_1"], "decay.compress.source_kind_mismatch"),
        (["pr_1"], "decay.compress.source_kind_mismatch"),
        (["mem_1", "mem_1"], "decay.compress.source_duplicate"),
    ],
)
def test_bad_source_ids_are_refused_with_a_code(ids: list[str], code: str) -> None:
    with pytest.raises(ValidationError) as info:
        source_kind_of(ids)
    assert info.value.code == code


def test_empty_and_mixed_sources_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        compress([])
    assert info.value.code == "decay.compress.source_missing"
    mixed = [mem(1, "a"), Source("ep_1", SourceKind.EPISODE, "b", 0.5, "user")]
    with pytest.raises(ValidationError) as info:
        compress(mixed)
    assert info.value.code == "decay.compress.source_kind_mismatch"
    lying = [Source("mem_1", SourceKind.EPISODE, "b", 0.5, "user")]
    with pytest.raises(ValidationError) as info:
        compress(lying)
    assert info.value.code == "decay.compress.source_kind_mismatch"


def test_a_missing_source_is_named() -> None:
    found = {s.id: s for s in sources()[:2]}
    assert [s.id for s in order_sources(["mem_2", "mem_1"], found)] == ["mem_2", "mem_1"]
    with pytest.raises(ValidationError, match="mem_9") as info:
        order_sources(["mem_1", "mem_9"], found)
    assert info.value.code == "decay.compress.source_missing"
    assert "decay.compress.source_missing" in str(info.value)


def test_unknown_authority_and_bad_confidence_are_refused() -> None:
    with pytest.raises(ValidationError, match="'rumour'") as info:
        compress([mem(1, "a", authority="rumour")])
    assert info.value.code == "decay.compress.unknown_authority"
    with pytest.raises(ValidationError) as info:
        compress([mem(1, "a", confidence=1.5)])
    assert info.value.code == "decay.compress.bad_confidence"
    custom = CompressionPolicy(trust_order=("rumour", "gossip"))
    assert compress([mem(1, "a", authority="rumour"), mem(2, "b", authority="gossip")], custom).authority == (
        "gossip"
    )


def test_policy_is_validated() -> None:
    with pytest.raises(ValidationError) as info:
        CompressionPolicy(max_claim_bytes=3, truncation_suffix="…")
    assert info.value.code == "decay.compress.bad_policy"
    with pytest.raises(ValidationError):
        CompressionPolicy(trust_order=("a", "a"))


def test_summarise_with_uses_the_text_and_the_same_metadata() -> None:
    summary = summarise_with(sources(), "a model's summary")
    assert summary.claim == "a model's summary"
    assert dataclasses.replace(summary, claim="x") == dataclasses.replace(compress(sources()), claim="x")
    with pytest.raises(ValidationError) as info:
        summarise_with(sources(), "  \n")
    assert info.value.code == "decay.compress.empty_summary"
