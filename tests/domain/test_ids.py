"""Job ids: UUIDv7 (RFC 9562), made one at a time or a batch at once."""

from __future__ import annotations

import time
import uuid

import pytest

from memtasks.domain.ids import time_ordered_ids, time_ordered_uuid

pytestmark = pytest.mark.unit


def test_a_batch_of_ids_is_version_7_with_the_rfc_variant_and_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = time_ordered_ids(2_000)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 2_000
    for text in ids:
        value = uuid.UUID(text)
        assert str(value) == text
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after


def test_ids_made_in_a_later_millisecond_sort_later() -> None:
    first = time_ordered_ids(1)[0]
    made_at, deadline = uuid.UUID(first).int >> 80, time.monotonic() + 1
    while time.time_ns() // 1_000_000 <= made_at and time.monotonic() < deadline:
        pass  # until the clock has moved on a millisecond
    second, single = time_ordered_ids(1)[0], str(time_ordered_uuid())
    assert first < second and first < single


def test_the_random_bits_vary() -> None:
    ids = time_ordered_ids(64)
    tails = {uuid.UUID(i).int & ((1 << 62) - 1) for i in ids}
    heads = {(uuid.UUID(i).int >> 64) & 0xFFF for i in ids}
    assert len(tails) == 64 and len(heads) > 1


def test_the_two_job_id_forms_are_made_and_checked_alike() -> None:
    from memtasks.domain.errors import ValidationError
    from memtasks.domain.ids import (
        check_decay_job_id,
        check_mem_tree_job_id,
        new_decay_job_id,
        new_mem_tree_job_id,
    )

    mem_tree, decay = new_mem_tree_job_id(), new_decay_job_id()
    assert check_mem_tree_job_id(mem_tree) == mem_tree and uuid.UUID(mem_tree[4:]).version == 7
    assert check_decay_job_id(decay) == decay and uuid.UUID(hex=decay[3:]).version == 7
    for bad in (decay, mem_tree.upper(), mem_tree + "x", None):
        with pytest.raises(ValidationError, match="job_id must look like job:<uuid>"):
            check_mem_tree_job_id(bad)
    with pytest.raises(ValidationError, match="job_id must look like dj_"):
        check_decay_job_id(mem_tree)
