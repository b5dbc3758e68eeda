"""What every command shares: settings, the runtime, one-line errors, exit codes, output helpers.

Exit codes: 0 done (a deduplicated enqueue included), 1 the work failed (a database or broker
error, a job that cannot be retried, …), 2 usage or configuration (a bad option or value,
a bad setting, no database or one that needs ``memtasks db upgrade``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from memtasks.config import Settings, load_settings
from memtasks.services.runtime import Runtime, open_runtime

# Piped output (scripts, CI logs) gets wide tables instead of Rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_USAGE = 2

JSON_HELP = "print one JSON object instead of text (errors stay one line on stderr)"


class State:
    """Global options (each also a MEMTASKS_* variable) and the objects built from them.

    ``reader``: a read-only runtime (nothing created, nothing written); ``runtime``: a
    read-write one that creates and migrates nothing. Both need the schema at the newest
    revision: otherwise one line saying "run `memtasks db upgrade`" (exit 2).
    """

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None
        self._reader: Runtime | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(**self.overrides)
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = open_runtime(self.settings, migrate=False)
        return self._runtime

    @property
    def reader(self) -> Runtime:
        if self._reader is None:
            self._reader = self._runtime or open_runtime(self.settings, read_only=True)
        return self._reader


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    if found is None:  # a command invoked without the root callback (tests)
        found = State({})
        ctx.obj = found
    return found


def _error(message: str, hint: str | None) -> None:
    err.print(f"error: {message}" + (f" — {hint}" if hint else ""), markup=False)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Print one line ``error: … — hint`` and exit 1 (the work failed)."""
    _error(message, hint)
    raise typer.Exit(EXIT_FAILURE)


def usage(message: str, hint: str | None = None) -> NoReturn:
    """Print one line ``error: … — hint`` and exit 2 (bad usage: an option, a value, flags)."""
    _error(message, hint)
    raise typer.Exit(EXIT_USAGE)


E = TypeVar("E", bound=Enum)


def shown(value: str) -> str:
    """A value quoted for a message, cut when long."""
    return repr(value) if len(value) <= 80 else repr(value[:80]) + "…"


def choice(value: str, allowed: Iterable[str], noun: str) -> str:
    """``value`` when it is one of ``allowed``; otherwise exit 2 naming the valid values."""
    options = list(allowed)
    if value not in options:
        usage(f"unknown {noun} {shown(value)}: use one of {', '.join(options)}")
    return value


def enum_choice(value: str, enum: type[E], noun: str) -> E:
    """The member of ``enum`` whose value is ``value``; otherwise exit 2 naming the valid values."""
    choice(value, [str(m.value) for m in enum], noun)
    return enum(value)


def completer(values: Iterable[str]) -> Any:
    """A shell-completion callback offering ``values``."""
    fixed = list(values)

    def complete(incomplete: str) -> list[str]:
        return [v for v in fixed if v.startswith(incomplete)]

    return complete


AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*")
AGE_UNITS_MS = {"s": 1_000, "sec": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
AGE_UNITS_MS["w"] = 7 * AGE_UNITS_MS["d"]


def parse_age(text: str, option: str) -> int:
    """``30m``, ``2h``, ``3d``, ``1w``, ``45s`` as milliseconds; otherwise exit 2."""
    found = AGE.fullmatch(text)
    if found is None:
        usage(
            f"{option} {shown(text)} is not an age: use a number and a unit (s, m, h, d, w), e.g. 30m, 2h, 3d"
        )
    return int(float(found.group(1)) * AGE_UNITS_MS[found.group(2)])


def refuse_together(**flags: bool) -> None:
    """Exit 2 when more than one of ``flags`` (option name → given) is set."""
    given = [name for name, on in flags.items() if on]
    if len(given) > 1:
        usage(f"{' and '.join(given)} contradict each other: give one of them")


def plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """One JSON document on stdout (dataclasses and enums made plain)."""
    print(json.dumps(plain(value), indent=2, sort_keys=True, default=str))


def when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(ms: int | None) -> str:
    if ms is None:
        return "—"
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def relative(ms: int | None, now_ms: int) -> str:
    """``3.2m ago`` / ``in 40.0s`` / ``—``."""
    if ms is None:
        return "—"
    return f"{age(now_ms - ms)} ago" if ms <= now_ms else f"in {age(ms - now_ms)}"


def when_and_age(ms: int | None, now_ms: int) -> str:
    """``2025-01-02 03:04:05 UTC (3.2m ago)``."""
    return "—" if ms is None else f"{when(ms)} ({relative(ms, now_ms)})"
