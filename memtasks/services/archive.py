"""The archive as operators use it: what the prunes took, and restoring it.

Consolidation and the finished-job prune move rows into the archive tables; the
``purge_archive`` sweep deletes them after ``MEMTASKS_ARCHIVE_GRACE_DAYS``. Here an operator
(``memtasks archive``, the web console) lists the runs with archived rows, reads a run's
rows, and restores a run, a conversation's messages or a job; every restore is recorded in
``operator_actions`` with who, through what, and how many rows came back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from memtasks.domain.errors import ValidationError
from memtasks.domain.wire import lookup_id
from memtasks.services.runtime import Runtime
from memtasks.storage.archive_repo import ArchivedRun, ArchiveRepo, Restored
from memtasks.storage.audit_repo import OperatorActions

CODE_TARGET = "archive.target.invalid"
MAX_CONVERSATION_ID = 64


class Scope(StrEnum):
    """What one restore brings back."""

    RUN = "run"
    CONVERSATION = "conversation"
    JOB = "job"


@dataclass(frozen=True, slots=True)
class RestoreTarget:
    """A consolidation run (its ledger id), a conversation (its messages) or a job (its id)."""

    scope: Scope
    key: str

    @classmethod
    def of(cls, scope: str, key: object) -> RestoreTarget:
        """Checked: a run id is an integer ≥ 1; a conversation id 1–64 characters; a job id
        one the tables could have made."""
        try:
            which = Scope(scope)
        except ValueError:
            raise ValidationError(
                f"unknown restore scope {scope!r:.40} (known: run, conversation, job)", code=CODE_TARGET
            ) from None
        text = str(key).strip()
        if which is Scope.RUN and not (text.isascii() and text.isdigit() and int(text) >= 1):
            raise ValidationError(f"invalid run id {text!r:.40}: an integer ≥ 1", code=CODE_TARGET)
        if which is Scope.CONVERSATION and not 1 <= len(text) <= MAX_CONVERSATION_ID:
            raise ValidationError(
                f"invalid conversation id {text!r:.80}: 1–{MAX_CONVERSATION_ID} characters", code=CODE_TARGET
            )
        if which is Scope.JOB and lookup_id(text) is None:
            raise ValidationError(f"invalid job id {text!r:.80}", code=CODE_TARGET)
        return cls(which, text)

    def describe(self) -> str:
        return f"{self.scope.value} {self.key}"


@dataclass(frozen=True, slots=True)
class ArchiveOverview:
    grace_days: float
    counts: dict[str, int]
    runs: list[ArchivedRun] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "grace_days": self.grace_days,
            "counts": dict(self.counts),
            "runs": [
                {
                    "run_id": r.run_id,
                    "archived_at_ms": r.archived_at_ms,
                    "messages": r.messages,
                    "outcomes": r.outcomes,
                }
                for r in self.runs
            ],
        }


class Archive:
    """The archive of ``runtime``'s database."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.repo = ArchiveRepo(runtime.engine, clock=runtime.jobs.clock)

    def overview(self, limit: int = 50) -> ArchiveOverview:
        return ArchiveOverview(
            self.runtime.settings.archive_grace_days, self.repo.counts(), self.repo.runs(limit)
        )

    def run_rows(self, run_id: int, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
        return self.repo.run_rows(run_id, limit=limit)

    def restore(self, target: RestoreTarget, *, actor: str, via: str) -> Restored:
        """Restore ``target`` and record who did it; what came back, what stayed and why."""
        if target.scope is Scope.RUN:
            done = self.repo.restore_run(int(target.key))
        elif target.scope is Scope.CONVERSATION:
            done = self.repo.restore_conversation(target.key)
        else:
            done = self.repo.restore_job(target.key)
        OperatorActions(self.runtime.engine, clock=self.runtime.jobs.clock).record(
            actor=actor,
            via=via,
            action="restore",
            target=json.dumps({target.scope.value: target.key}),
            affected=done.total_restored,
        )
        return done


__all__ = ["Archive", "ArchiveOverview", "RestoreTarget", "Scope"]
