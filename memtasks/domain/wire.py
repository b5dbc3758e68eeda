"""Values that arrive in broker messages, checked before they reach a query.

A message's arguments are JSON from anybody who can reach the broker: a number may be a
string, NaN or 1e308, a list may be a string. Each check here either returns the value
in the form the pipeline uses or raises a :class:`ValidationError` naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from memtasks.domain.errors import ValidationError
from memtasks.domain.jobs import JobKind
from memtasks.domain.text import shorten, unstorable

MAX_DELAY_S = 10 * 366 * 24 * 3600.0
"""The longest a job may be delayed at enqueue (ten years)."""
MAX_INTERVAL_S = 366 * 24 * 3600.0
"""The longest sweep interval (a year)."""
MAX_DRAIN_LIMIT = 10_000
CODE_BAD_ARGUMENT = "message.argument.invalid"


def _bad(message: str) -> ValidationError:
    return ValidationError(message, code=CODE_BAD_ARGUMENT)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(value: object, name: str, *, zero_ok: bool, limit: float, bounds: str) -> float:
    """``value`` as finite seconds from 0 (or above 0) to ``limit``; ``bounds`` says so."""
    if not _is_number(value):
        raise _bad(f"{name} must be a number of seconds, got {shorten(value)}")
    assert isinstance(value, int | float)
    # A huge int is refused before float() would overflow on it.
    seconds = math.inf if isinstance(value, int) and value > limit else float(value)
    low_ok = seconds >= 0 if zero_ok else seconds > 0
    if not (math.isfinite(seconds) and low_ok and seconds <= limit):
        raise _bad(f"{name} must be {bounds} seconds, got {shorten(value)}")
    return seconds


def check_delay_s(value: object, name: str = "delay_s") -> float | None:
    """A delay in seconds: None, or a finite number between 0 and :data:`MAX_DELAY_S`."""
    if value is None:
        return None
    return _seconds(value, name, zero_ok=True, limit=MAX_DELAY_S, bounds=f"between 0 and {MAX_DELAY_S:.0f}")


def check_interval_s(value: object, name: str = "interval_s") -> float:
    """A sweep interval in seconds: a finite number above 0, at most :data:`MAX_INTERVAL_S`."""
    return _seconds(
        value,
        name,
        zero_ok=False,
        limit=MAX_INTERVAL_S,
        bounds=f"above 0 and at most {MAX_INTERVAL_S:.0f}",
    )


def parse_kinds(value: object, name: str = "kinds") -> list[JobKind]:
    """A non-empty list of job kinds (:class:`UnknownJobKind` names an unknown one)."""
    if not isinstance(value, list | tuple) or not value:
        raise _bad(f"{name} must be a non-empty list of job kinds, got {shorten(value)}")
    if any(not isinstance(kind, str) for kind in value):
        raise _bad(f"{name} must hold job kinds as strings, got {shorten(value)}")
    return [JobKind.parse(kind) for kind in value]


def drain_limit(value: object, name: str = "limit") -> int:
    """How many jobs one drain message claims: a number, clamped to 1 … :data:`MAX_DRAIN_LIMIT`."""
    if not _is_number(value):
        raise _bad(f"{name} must be a whole number, got {shorten(value)}")
    assert isinstance(value, int | float)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(f"{name} must be a whole number, got {value!r}")
    return max(1, min(int(value), MAX_DRAIN_LIMIT))


def lookup_id(value: object) -> str | None:
    """``value`` when it can name a stored row (a string a text column can hold), else None.

    Row ids are made by memtasks (``job:<uuid>``, ``dj_<hex>``); an id that is no such
    string names no row, so a lookup answers "none" without asking the database.
    """
    if not isinstance(value, str) or not value or unstorable(value) is not None:
        return None
    return value


def check_source_ids(value: object, name: str = "source_ids") -> tuple[str, ...]:
    """A list of source ids as a tuple; a string, mapping or scalar is refused (each item is
    checked by :class:`~memtasks.domain.decay.DecaySpec`)."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _bad(f"{name} must be a list of ids, got {shorten(value)}")
    return tuple(value)


__all__ = [
    "MAX_DELAY_S",
    "MAX_DRAIN_LIMIT",
    "MAX_INTERVAL_S",
    "check_delay_s",
    "check_interval_s",
    "check_source_ids",
    "drain_limit",
    "lookup_id",
    "parse_kinds",
]
