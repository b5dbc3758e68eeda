"""Consolidation gates: the settings, the time and session gates, the last-run fact.

Everything here is pure: the caller passes the clock's reading (Unix milliseconds) and
what it read from the store. A gate returns a :class:`GateDecision` saying whether it
passed and why; the decisions go, in order, into the consolidation ledger.

The last run is kept as a fact of sender ``__system__`` under ``last_consolidated_at``:
Unix seconds as decimal text. A stored value that does not parse, is 0 or is negative
counts as absent (no previous run); a value is never produced for a time before
1970-01-01T00:00:01Z, so 0 is never stored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from memtasks.domain.clock import DAY_MS, HOUR_MS, SECOND_MS
from memtasks.domain.errors import ValidationError

SYSTEM_SENDER = "__system__"
LAST_CONSOLIDATED_KEY = "last_consolidated_at"

CODE_CONFIG = "consolidation.config.invalid"
CODE_TRIGGER = "consolidation.trigger.invalid"
MAX_TRIGGER_CHARS = 32  # consolidation_runs.trigger is String(32)

_SECONDS = re.compile(r"[0-9]{1,18}")

DetailValue = int | float | str | bool | None


class Gate(StrEnum):
    """The consolidation gates, in the order they are evaluated."""

    LOCK = "lock"
    TIME = "time"
    SESSION = "session"


class RunOutcome(StrEnum):
    """How a consolidation call ended, as the ledger records it.

    Only ``ran`` is a consolidation: a ``dry_run`` counted what a run would delete and
    deleted nothing, so it never counts as the last run (for the time gate, ``memtasks
    status`` or the exporter's last-run timestamp).
    """

    RAN = "ran"
    SKIPPED = "skipped"
    FAILED = "failed"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, slots=True)
class GateDecision:
    """One gate's verdict and the reason, as recorded in the ledger."""

    gate: Gate
    passed: bool
    reason: str
    detail: Mapping[str, DetailValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, DetailValue]:
        return {"passed": self.passed, "reason": self.reason, **self.detail}


def decided_by(decisions: Sequence[GateDecision]) -> Gate | None:
    """The first gate that rejected the run, or ``None`` when every gate passed."""
    return next((d.gate for d in decisions if not d.passed), None)


def gates_json(decisions: Sequence[GateDecision], **extra: DetailValue) -> str:
    """The decisions as a JSON object keyed by gate, in evaluation order, for the ledger.

    ``decided_by`` names the rejecting gate (``null`` when all passed); ``extra`` adds
    top-level notes (e.g. which gates a forced prune bypassed).
    """
    rejected = decided_by(decisions)
    body: dict[str, object] = {d.gate.value: d.to_dict() for d in decisions}
    body["decided_by"] = rejected.value if rejected is not None else None
    body.update(extra)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ConsolidationConfig:
    """Consolidation thresholds (the seed's defaults) and the delete batch size.

    Construction validates every field and raises :class:`ValidationError` naming it.
    """

    min_hours: float = 24.0
    min_sessions: int = 5
    max_message_age_days: int = 30
    max_outcomes_per_sender: int = 100
    delete_batch_size: int = 1_000
    archive_grace_days: float = 7.0
    """How long pruned rows stay in the archive, restorable; 0 deletes them at once."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValidationError:
            return ValidationError(
                f"invalid consolidation setting {name}={getattr(self, name)!r}: {why}", code=CODE_CONFIG
            )

        if isinstance(self.min_hours, bool) or not isinstance(self.min_hours, int | float):
            raise bad("min_hours", "must be a number of hours")
        if not math.isfinite(self.min_hours) or self.min_hours < 0:
            raise bad("min_hours", "must be a finite number ≥ 0")
        grace = self.archive_grace_days
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not math.isfinite(grace)
            or grace < 0
        ):
            raise bad("archive_grace_days", "must be a finite number of days ≥ 0")
        for name, minimum in (
            ("min_sessions", 0),
            ("max_message_age_days", 0),
            ("max_outcomes_per_sender", 0),
            ("delete_batch_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(name, "must be an integer")
            if value < minimum:
                raise bad(name, f"must be ≥ {minimum}")

    @property
    def archives(self) -> bool:
        """Pruned rows go to the archive (a grace above 0) rather than being deleted at once."""
        return self.archive_grace_days > 0

    @property
    def max_message_age_ms(self) -> int:
        return self.max_message_age_days * DAY_MS

    def message_cutoff_ms(self, now_ms: int) -> int:
        """Messages of closed conversations last updated strictly before this are pruned."""
        return now_ms - self.max_message_age_ms


def check_trigger(trigger: str) -> str:
    """The trigger label of a run: non-empty, at most 32 characters, no control characters."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise ValidationError(
            f"invalid consolidation trigger {trigger!r}: must be a non-empty label", code=CODE_TRIGGER
        )
    if len(trigger) > MAX_TRIGGER_CHARS:
        raise ValidationError(
            f"invalid consolidation trigger {trigger!r}: at most {MAX_TRIGGER_CHARS} characters",
            code=CODE_TRIGGER,
        )
    if any(not ch.isprintable() for ch in trigger):
        raise ValidationError(
            f"invalid consolidation trigger {trigger!r}: control characters are not allowed",
            code=CODE_TRIGGER,
        )
    return trigger


def parse_last_run(value: str | None) -> int | None:
    """The stored last-run time in Unix seconds, or ``None`` when absent or unusable.

    Only plain decimal digits (surrounding whitespace ignored) are accepted; anything
    else, and 0, counts as absent — the seed's ``parse::<u64>().ok()`` behaviour, with 0
    (a value a pre-1970 clock would have produced) refused as well.
    """
    if value is None:
        return None
    text = value.strip()
    if not _SECONDS.fullmatch(text):
        return None
    seconds = int(text)
    return seconds if seconds > 0 else None


def last_run_value(now_ms: int) -> str | None:
    """The fact text to store for a run at ``now_ms``: whole seconds, never 0 or pre-1970.

    ``None`` means "do not write": the clock is before 1970-01-01T00:00:01Z.
    """
    seconds = now_ms // SECOND_MS
    return str(seconds) if seconds > 0 else None


def time_gate(last_run_s: int | None, now_ms: int, min_hours: float) -> GateDecision:
    """Pass when no run is recorded, or when at least ``min_hours`` have passed since it.

    Rejects when the clock reads before 1970 (no decision can be trusted) and when the
    recorded run lies in the future (clock skew or a corrupt fact); the comparison is in
    milliseconds, so exactly ``min_hours`` passes.
    """
    if last_run_s is None:
        return GateDecision(Gate.TIME, True, "no previous run recorded", {"last_run_s": None})
    if now_ms < 0:
        return GateDecision(
            Gate.TIME, False, "clock reads before 1970: refusing to decide", {"now_ms": now_ms}
        )
    last_run_ms = last_run_s * SECOND_MS
    if last_run_ms > now_ms:
        return GateDecision(
            Gate.TIME,
            False,
            f"last run ({last_run_s} s) is in the future of the clock ({now_ms} ms)",
            {"last_run_s": last_run_s, "now_ms": now_ms},
        )
    elapsed_ms = now_ms - last_run_ms
    hours = elapsed_ms / HOUR_MS
    detail: dict[str, DetailValue] = {
        "last_run_s": last_run_s,
        "hours_since": round(hours, 3),
        "min_hours": min_hours,
    }
    if elapsed_ms >= min_hours * HOUR_MS:
        return GateDecision(Gate.TIME, True, f"{hours:.2f} h since the last run ≥ {min_hours} h", detail)
    return GateDecision(Gate.TIME, False, f"{hours:.2f} h since the last run < {min_hours} h", detail)


def session_gate(new_sessions: int, min_sessions: int) -> GateDecision:
    """Pass when at least ``min_sessions`` conversations started since the last run."""
    detail: dict[str, DetailValue] = {"new_sessions": new_sessions, "min_sessions": min_sessions}
    if new_sessions >= min_sessions:
        return GateDecision(Gate.SESSION, True, f"{new_sessions} new conversations ≥ {min_sessions}", detail)
    return GateDecision(Gate.SESSION, False, f"{new_sessions} new conversations < {min_sessions}", detail)


def sessions_since_ms(last_run_s: int | None) -> int | None:
    """The session gate's threshold: conversations started strictly after this count."""
    return None if last_run_s is None else last_run_s * SECOND_MS
