"""Fair share across agents: each job belongs to a lane (its agent or tenant), and within a
priority the claims take the lanes in turn instead of the oldest job across everyone.

**Lanes.** A job's lane is the key its producer gives (``fair_key``), else the payload's
``agent_id`` or ``tenant_id`` (a string), else the shared lane ``""`` of every job without one.

**Virtual time.** Each job gets a place in its lane, ``fair_seq``, in milliseconds: the lane's
jobs are spaced :data:`LANE_SPACING_MS` apart, starting no earlier than the job is due. A
claim takes ready rows by ``(priority, fair_seq)``. A lane with 100,000 jobs queued at once
spreads them over 100,000 s of virtual time; a job of another lane enqueued a second later
gets the virtual time of its due moment, so it waits behind at most one job per second of
each busy lane's elapsed backlog — in practice, the next claim — and two busy lanes
alternate one job each. Kind priority still comes first: a seal overtakes bulk work of any
lane. A retried or deferred job keeps its place.

Pure rules: which lane, and the places of new jobs given where each lane ends now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memtasks.domain.errors import MalformedPayload
from memtasks.domain.text import unstorable

SHARED_LANE = ""
"""The lane of every job that names no agent or tenant."""
MAX_FAIR_KEY_CHARS = 128
PAYLOAD_FIELDS = ("agent_id", "tenant_id")
"""Payload fields that name a job's lane, in order, when the producer gives no key."""
LANE_SPACING_MS = 1_000
"""Virtual time between two jobs of one lane."""


def check_fair_key(key: object) -> str:
    """A lane key: a string of 1–128 characters a text column can hold."""
    if not isinstance(key, str) or not key.strip():
        raise MalformedPayload("fair_key must be a non-empty string")
    if len(key) > MAX_FAIR_KEY_CHARS:
        raise MalformedPayload(f"fair_key longer than {MAX_FAIR_KEY_CHARS} characters")
    problem = unstorable(key)
    if problem is not None:
        raise MalformedPayload(f"fair_key {problem}")
    return key


def lane_of(payload: Mapping[str, Any], fair_key: str | None = None) -> str:
    """The job's lane: ``fair_key`` if given, else the first payload field of
    :data:`PAYLOAD_FIELDS` holding a usable key, else :data:`SHARED_LANE`."""
    if fair_key is not None:
        return check_fair_key(fair_key)
    for name in PAYLOAD_FIELDS:
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_FAIR_KEY_CHARS:
            continue
        if unstorable(value) is None:
            return value
    return SHARED_LANE


def places(lanes: Sequence[str], due_ms: Sequence[int], lane_ends: Mapping[str, int | None]) -> list[int]:
    """The ``fair_seq`` of each new job of one enqueue, in order: ``lane_ends[lane]`` is the
    largest ``fair_seq`` of the lane's ready jobs now (None: the lane is empty). The k-th job of
    a lane in the enqueue (k from 1) goes at ``max(due + (k − 1)·S, lane_end + k·S)``: its lane's
    jobs one spacing apart after the lane's end, and never before it is due."""
    if len(lanes) != len(due_ms):
        raise ValueError("one due time per lane key")
    counts: dict[str, int] = {}
    placed = []
    for lane, due in zip(lanes, due_ms, strict=True):
        k = counts[lane] = counts.get(lane, 0) + 1
        end = lane_ends.get(lane)
        spread = due + (k - 1) * LANE_SPACING_MS
        placed.append(spread if end is None else max(spread, end + k * LANE_SPACING_MS))
    return placed


__all__ = [
    "LANE_SPACING_MS",
    "MAX_FAIR_KEY_CHARS",
    "PAYLOAD_FIELDS",
    "SHARED_LANE",
    "check_fair_key",
    "lane_of",
    "places",
]
