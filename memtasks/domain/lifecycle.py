"""The life of a queued job, for every job table: five phases and the moves between them.

Both job tables follow this one state machine. Each keeps the words of its seed for the
phases (``mem_tree_jobs.status``: ready, running, done, failed, cancelled;
``decay_jobs.state``: pending, in_progress, completed, failed, cancelled) through a
:class:`StateWords`; the queue engine in ``memtasks.storage.queue`` declares, for each of
its SQL statements, which moves it makes, and refuses at start-up a statement whose moves
this table does not allow. A test runs every statement against rows in every phase and
checks what really changed against the same table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from memtasks.domain.errors import IllegalTransition


class Phase(StrEnum):
    """Where a job is in its life, whatever its table calls it."""

    READY = "ready"
    """Waiting to be claimed once due (its due time may lie ahead: a retry's backoff)."""
    RUNNING = "running"
    """Claimed under a lease; only the lease holder may settle it."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    # claim; cancel
    Phase.READY: frozenset({Phase.RUNNING, Phase.CANCELLED}),
    # settle done or failed; back to ready after a retry, a deferral, a recovered or released lease
    Phase.RUNNING: frozenset({Phase.DONE, Phase.FAILED, Phase.READY}),
    Phase.DONE: frozenset(),
    # an operator's requeue or retry, the self-heal sweep
    Phase.FAILED: frozenset({Phase.READY}),
    Phase.CANCELLED: frozenset(),
}
"""The moves a job may make. Staying in a phase is no move (a heartbeat, a dispatch mark)."""

TERMINAL: frozenset[Phase] = frozenset({Phase.DONE, Phase.FAILED, Phase.CANCELLED})
ACTIVE: frozenset[Phase] = frozenset({Phase.READY, Phase.RUNNING})
"""Active jobs hold their dedupe key."""


def is_allowed(current: Phase, target: Phase) -> bool:
    return target in TRANSITIONS[current]


def check_moves(what: str, moves: Iterable[tuple[Phase, Phase]]) -> None:
    """:class:`IllegalTransition` naming ``what`` when one of ``moves`` is not allowed."""
    for current, target in moves:
        if not is_allowed(current, target):
            raise IllegalTransition(f"{what}: {current.value} → {target.value} is not allowed")


@dataclass(frozen=True, slots=True)
class StateWords:
    """A table's own word for each phase."""

    ready: str
    running: str
    done: str
    failed: str
    cancelled: str

    def word(self, phase: Phase) -> str:
        return str(getattr(self, phase.value))

    def phase(self, word: str) -> Phase:
        """The phase a stored word names; ValueError for a word this table does not use."""
        for phase in Phase:
            if self.word(phase) == word:
                return phase
        raise ValueError(f"unknown state word {word!r:.40}")

    def words(self, phases: Iterable[Phase]) -> tuple[str, ...]:
        return tuple(self.word(p) for p in phases)


MEM_TREE_WORDS = StateWords(
    ready="ready", running="running", done="done", failed="failed", cancelled="cancelled"
)
DECAY_WORDS = StateWords(
    ready="pending", running="in_progress", done="completed", failed="failed", cancelled="cancelled"
)


__all__ = [
    "ACTIVE",
    "DECAY_WORDS",
    "MEM_TREE_WORDS",
    "TERMINAL",
    "TRANSITIONS",
    "Phase",
    "StateWords",
    "check_moves",
    "is_allowed",
]
