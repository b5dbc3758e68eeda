"""Job ids: UUIDv7 (RFC 9562) and the two forms job rows carry.

A mem-tree job's id is ``job:<uuid>``, a decay job's ``dj_<32 hex>``. Storage makes them when a
row is inserted; a producer that has only the broker (:mod:`memtasks.client`) makes them
itself, so it knows a job's id before any worker runs, and the worker stores the row under
that id. Both use these functions: one bit layout, one form, one check.
"""

from __future__ import annotations

import os
import re
import time
import uuid

from memtasks.domain.errors import ValidationError
from memtasks.domain.text import shorten

MEM_TREE_PREFIX = "job:"
DECAY_PREFIX = "dj_"
CODE_BAD_ID = "job.id.invalid"

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MEM_TREE_ID = re.compile(f"{MEM_TREE_PREFIX}{_UUID}")
DECAY_ID = re.compile(f"{DECAY_PREFIX}[0-9a-f]{{32}}")


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids made one after another sort one after another, so new rows land at the right edge
    of the primary-key index instead of on a random page each.
    """
    return uuid.UUID(time_ordered_ids(1)[0])


def time_ordered_ids(count: int) -> list[str]:
    """``count`` UUIDv7 strings (see :func:`time_ordered_uuid`), made together: one clock read
    and one read of random bytes for the lot — the per-id cost of a batched enqueue."""
    head = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | 0x7 << 76 | 0x2 << 62
    random = os.urandom(10 * count)
    ids = []
    for i in range(count):
        value = int.from_bytes(random[10 * i : 10 * i + 10])
        value = head | (value >> 68 & 0xFFF) << 64 | value & (1 << 62) - 1
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def mem_tree_job_ids(count: int) -> list[str]:
    """``count`` new mem-tree job ids (``job:<uuid>``)."""
    return [f"{MEM_TREE_PREFIX}{uid}" for uid in time_ordered_ids(count)]


def new_mem_tree_job_id() -> str:
    return mem_tree_job_ids(1)[0]


def new_decay_job_id() -> str:
    """A new decay job id (``dj_<32 hex>``)."""
    return f"{DECAY_PREFIX}{time_ordered_uuid().hex}"


def _check(value: object, form: re.Pattern[str], shape: str, name: str) -> str:
    if not isinstance(value, str) or not form.fullmatch(value):
        raise ValidationError(f"{name} must look like {shape}, got {shorten(value)}", code=CODE_BAD_ID)
    return value


def check_mem_tree_job_id(value: object, name: str = "job_id") -> str:
    """``value`` when it is a mem-tree job id (``job:`` and a lowercase UUID), else
    :class:`ValidationError` naming ``name``."""
    return _check(value, MEM_TREE_ID, "job:<uuid> (lowercase)", name)


def check_decay_job_id(value: object, name: str = "job_id") -> str:
    """``value`` when it is a decay job id (``dj_`` and 32 lowercase hex digits), else
    :class:`ValidationError` naming ``name``."""
    return _check(value, DECAY_ID, "dj_<32 lowercase hex digits>", name)


__all__ = [
    "DECAY_PREFIX",
    "MEM_TREE_PREFIX",
    "check_decay_job_id",
    "check_mem_tree_job_id",
    "mem_tree_job_ids",
    "new_decay_job_id",
    "new_mem_tree_job_id",
    "time_ordered_ids",
    "time_ordered_uuid",
]
