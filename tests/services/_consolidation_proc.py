"""Process entry point for the two-process consolidation test (importable by a spawned child)."""

from __future__ import annotations

import os
from typing import Any

from memtasks.domain.gates import ConsolidationConfig
from memtasks.locks import RedisLockGate, redis_client
from memtasks.services.consolidation import Consolidator
from memtasks.storage.consolidation_repo import ConsolidationRepo
from memtasks.storage.engine import get_engine

HOLD_TIMEOUT_S = 15.0


def consolidate_once(
    db_url: str, redis_url: str, lock_name: str, start: Any, answered: Any, results: Any
) -> None:
    """Wait for the other process, call ``maybe_run`` once, put the report on ``results``.

    A process that gets past the lock gate keeps the lock (inside the session gate's
    query) until some process has answered, so the other one meets a held lock instead
    of arriving after the run finished. If both got the lock (the bug this guards
    against), both would wait out the timeout and both would report ``ran``.
    """
    engine = get_engine(db_url)

    class HoldingRepo(ConsolidationRepo):
        def count_conversations_started_after(self, after_ms: int | None) -> int:
            answered.wait(timeout=HOLD_TIMEOUT_S)
            return super().count_conversations_started_after(after_ms)

    gate = RedisLockGate(redis_client(redis_url), lock_name, ttl_s=30)
    consolidator = Consolidator(
        engine, gate, ConsolidationConfig(min_hours=0, min_sessions=5), repo=HoldingRepo(engine)
    )
    start.wait(timeout=60)
    try:
        report = consolidator.maybe_run("proc")
    except BaseException as exc:
        results.put({"pid": os.getpid(), "error": repr(exc)})
        raise
    finally:
        answered.set()
    results.put(
        {
            "pid": os.getpid(),
            "outcome": report.outcome.value,
            "decided_by": None if report.decided_by is None else report.decided_by.value,
            "run_id": report.run_id,
            "messages_pruned": report.messages_pruned,
        }
    )
