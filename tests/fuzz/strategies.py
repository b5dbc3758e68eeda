"""Hypothesis strategies shared by the fuzz tier: valid and hostile values."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from memtasks.domain.jobs import JobKind

SQL_META = ["'", '"', ";", "--", "%", "_", "\\", "/*", "*/", "' OR '1'='1", "); DROP TABLE mem_tree_jobs; --"]
"""Pieces of text that break naively built SQL (and LIKE patterns)."""

UNICODE = ["é", "✓", "ß", "İ", "\u200b", "\U0001f600", "\ufeff", "\u202e", "𝔘", "\r\n", "\t"]

storable_char = st.characters(codec="utf-8", exclude_characters="\x00")
"""Any character a text column holds: no NUL, no lone surrogate."""

surrogate = st.characters(categories=["Cs"])
"""A lone surrogate: a str character with no UTF-8 form."""

hostile_text = st.lists(
    st.one_of(st.sampled_from(SQL_META), st.sampled_from(UNICODE), storable_char.map(str)), max_size=12
).map("".join)
"""Text full of SQL metacharacters and awkward unicode, storable."""


def ident(max_size: int = 64) -> st.SearchStrategy[str]:
    """A storable, non-blank id of at most ``max_size`` characters, often hostile."""
    return (
        st.one_of(hostile_text, st.text(storable_char, min_size=1, max_size=max_size))
        .map(lambda s: s[:max_size])
        .filter(lambda s: bool(s.strip()))
    )


def unstorable_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """Text with a NUL or a lone surrogate somewhere (short enough for any id field)."""
    bad = st.one_of(st.just("\x00"), surrogate)
    return st.tuples(
        st.text(storable_char, max_size=max_size // 2), bad, st.text(max_size=max_size // 2)
    ).map("".join)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(storable_char, max_size=20),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(storable_char, max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
"""Anything JSON holds exactly (what a message or a payload may carry)."""

non_json = st.one_of(
    st.binary(max_size=8),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sets(st.integers(), max_size=2),
    st.builds(object),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.text(surrogate, min_size=1, max_size=3),
)
"""Values a payload must refuse: no JSON form (or none that round-trips)."""

anything = st.one_of(json_values, non_json)

wire_kinds = st.sampled_from([k.value for k in JobKind])


def unknown_kind() -> st.SearchStrategy[str]:
    known = {k.value for k in JobKind}
    return st.one_of(
        st.text(max_size=30),
        st.sampled_from(["SEAL", " seal", "seal ", "seal\x00", "topic_route", "digest_daily", "extract"]),
        st.text(min_size=81, max_size=2000),
    ).filter(lambda s: s not in known)


def deep(depth: int, leaf: Any = 0, containers: list[str] | None = None) -> Any:
    """A value nested ``depth`` containers deep (built iteratively, no recursion)."""
    value: Any = leaf
    for i in range(depth):
        kind = containers[i % len(containers)] if containers else "dict"
        value = {"a": value} if kind == "dict" else [value]
    return value
