"""What the queue engine needs to know about a job table: a small description.

Both job tables share the engine's columns under the same names (``priority``,
``attempts``, ``max_attempts``, ``lease_token``, ``locked_until_ms``, ``heartbeat_at_ms``,
``last_error``, ``failure_class``, ``started_at_ms``, ``completed_at_ms``,
``dispatched_at_ms``, ``last_backoff_ms``, ``created_at_ms``, ``updated_at_ms``); where the
seeds named a column their own way, the description says which one plays the role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Table

from memtasks.domain.errors import JobNotFound
from memtasks.domain.lifecycle import DECAY_WORDS, MEM_TREE_WORDS, Phase, StateWords
from memtasks.storage.tables import DEDUPE_WHERE, decay_jobs, mem_tree_jobs

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_WORD = re.compile(r"[a-z_]{1,32}")


@dataclass(frozen=True, slots=True, eq=False)
class QueueTable:
    """One job table as the engine sees it.

    ``claimable`` is the table's own condition for a ready row that may be claimed at all
    (not a retired kind); ``unattended`` narrows it to the rows the fleet claims and dispatches
    by itself (not an LLM summary without an operator's attestation). Each is a fixed piece of
    SQL over the table's own columns (alias ``j``), written here and nowhere else.
    """

    table: Table
    words: StateWords
    status: str
    due: str
    reason: str
    claimable: str
    unattended: str
    dedupe: str | None = None
    dedupe_where: str | None = None
    """The predicate of the partial unique index on ``dedupe``: an enqueue skips a row whose
    key an active row holds (``INSERT … ON CONFLICT … WHERE <this> DO NOTHING``)."""
    noun: str = "job"
    not_found_message: str = "job {0!r} not found"
    not_found_code: str | None = None
    reasons: Mapping[str, str] = field(default_factory=dict)
    """The table's words for what the engine itself records: ``attempts_exhausted``,
    ``recovered`` (last_error of a recovered lease), ``lease_exhausted``, ``defer_age`` (a
    deferral past the age cap)."""

    @property
    def name(self) -> str:
        return self.table.name

    def word(self, phase: Phase) -> str:
        return self.words.word(phase)

    def sql_names(self) -> dict[str, str]:
        """What the engine's SQL templates may name, each checked to be a plain identifier or
        state word of this table (no quote, no space, nothing a template could be broken by)."""
        names = {"table": self.name, "status": self.status, "due": self.due, "reason": self.reason}
        for role, name in names.items():
            if not _IDENTIFIER.fullmatch(name) or (role != "table" and name not in self.table.c):
                raise ValueError(f"{self.name}: {role} must name a column, got {name!r}")
        for phase in Phase:
            word = self.word(phase)
            if not _WORD.fullmatch(word):
                raise ValueError(f"{self.name}: the word for {phase.value} must be letters, got {word!r}")
            names[phase.value] = word
        names["claimable"] = self.claimable
        names["unattended"] = self.unattended
        return names

    def reason_word(self, what: str) -> str:
        return self.reasons[what]

    def not_found(self, job_id: object) -> JobNotFound:
        shown = job_id[:80] if isinstance(job_id, str) else repr(job_id)[:80]
        return JobNotFound(self.not_found_message.format(shown), code=self.not_found_code)


MEM_TREE = QueueTable(
    table=mem_tree_jobs,
    words=MEM_TREE_WORDS,
    status="status",
    due="available_at_ms",
    reason="failure_reason",
    # Retired kinds (memtasks.domain.jobs.RETIRED_KINDS) are never claimed; a sweep purges them.
    claimable="j.kind NOT IN ('topic_route', 'digest_daily')",
    unattended="TRUE",
    dedupe="dedupe_key",
    dedupe_where=DEDUPE_WHERE,
    reasons={
        "attempts_exhausted": "attempts_exhausted",
        "recovered": "recovered_from_stale_lock",
        "lease_exhausted": "lease_expired_attempts_exhausted",
        "defer_age": "defer_age_exceeded",
    },
)

DECAY = QueueTable(
    table=decay_jobs,
    words=DECAY_WORDS,
    status="state",
    due="scheduled_for_ms",
    reason="state_reason",
    noun="decay job",
    not_found_message="decay job {0} not found",
    not_found_code="decay.job.not_found",
    claimable="TRUE",
    # The fleet runs an LLM summary only once an operator handed it over with an attestation.
    unattended="(j.summary_method <> 'llm_summary' OR j.attestation_json IS NOT NULL)",
    reasons={
        "attempts_exhausted": "decay.runner.attempts_exhausted",
        "recovered": "decay.runner.recovered_from_stale_lock",
        "lease_exhausted": "decay.runner.lease_expired",
        "defer_age": "decay.runner.defer_age_exceeded",
        "cancelled": "decay.job.cancelled",
    },
)

__all__ = ["DECAY", "MEM_TREE", "QueueTable"]
