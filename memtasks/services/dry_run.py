"""A consolidation dry run that writes nothing: ``memtasks consolidate --dry-run`` runs on a
read-only engine, so it counts what a run would delete and records no ledger row."""

from __future__ import annotations

from typing import Any

from memtasks.services.consolidation_report import ConsolidationReport
from memtasks.services.maintenance import consolidator_for
from memtasks.services.runtime import Runtime
from memtasks.storage.consolidation_repo import ConsolidationRepo


class UnrecordedRuns(ConsolidationRepo):
    """The ledger as a read-only dry run sees it: read like the real one, nothing recorded."""

    def record_run(self, *_args: Any, **_kwargs: Any) -> int:
        return 0


def unrecorded_dry_run(
    runtime: Runtime, trigger: str = "manual", *, list_rows: bool = False
) -> ConsolidationReport:
    """What a prune would archive (or delete) now and what the time and session gates say; no
    lock taken, nothing written (``run_id`` is 0). ``list_rows``: the ids too."""
    consolidator = consolidator_for(runtime)
    consolidator.repo = UnrecordedRuns(runtime.engine)
    return consolidator.dry_run(trigger, list_rows=list_rows)


__all__ = ["UnrecordedRuns", "unrecorded_dry_run"]
