"""Memory consolidation: three gates, then prune old messages and excess outcomes.

:meth:`Consolidator.maybe_run` evaluates the gates in order — the fleet-wide Redis lock,
the time gate, the session gate — and stops at the first rejection: nothing is deleted
and nothing is written except the ledger row recording the skip. When every gate
passes it prunes, in bounded batches, while holding (and renewing) the lock, checking
between batches that the lock is still held; then, and only then, it stores the run
time as the fact (``__system__``, ``last_consolidated_at``, Unix seconds as text) in the
same transaction that settles the run's ledger row.

Choices beyond the seed, deliberately:

* :meth:`Consolidator.prune` bypasses the time and session gates but **still takes the
  lock**. The lock is mutual exclusion, not a policy: two prunes racing over the same
  rows would split the counts and interleave their ledger rows. If the lock is held, the
  forced prune is skipped (the holder is pruning already). A successful forced prune
  records the last run like any other run, so a forced run also resets the gates (and
  repairs a corrupt or future last-run fact).
* :meth:`Consolidator.dry_run` takes no lock and deletes nothing: it evaluates the time
  and session gates (to show what a scheduled run would decide) and counts, with the
  very queries the prune deletes with, what would be deleted now.
* Every call writes one ledger row. A run that passed its gates opens its row first
  (reading ``failed``/interrupted) and settles it at the end, so a killed run is visible.
* A failing run (an error inside the prune, a lost lock) settles its row as ``failed``
  with the error and the counts deleted so far, releases the lock, and re-raises.
* One clock reading per run: the gates, the message cutoff and the stored last-run time
  all use the time the run started (so conversations started during a run count toward
  the next one).
* With an archive grace above 0 (the default, 7 days) the prune moves what it removes into
  the archive tables, stamped with the run's ledger id and start, batch by batch in the
  batch's own transaction; ``memtasks archive restore --run`` brings a run back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.gates import (
    LAST_CONSOLIDATED_KEY,
    SYSTEM_SENDER,
    ConsolidationConfig,
    DetailValue,
    Gate,
    GateDecision,
    RunOutcome,
    check_trigger,
    gates_json,
    last_run_value,
    parse_last_run,
    session_gate,
    sessions_since_ms,
    time_gate,
)
from memtasks.locks import LockHold, LockUnavailable, RedisLockGate
from memtasks.services.consolidation_report import (
    ConsolidationReport,
    Progress,
    describe,
    elapsed_ms,
    forced_note,
)
from memtasks.storage.archive_repo import Stamp
from memtasks.storage.consolidation_repo import ConsolidationRepo
from memtasks.storage.facts_repo import Facts

log = logging.getLogger(__name__)

DEFAULT_LOCK_NAME = "memtasks:lock:consolidate"
OnProgress = Callable[[int, int], None]
"""Told the messages and outcomes deleted so far, after each batch."""
LOG_PREFIX = "memtasks.consolidation"


class Consolidator:
    """Runs consolidation against ``engine`` under ``lock_gate`` with ``config`` and ``clock``.

    Safe to call from several processes and machines at once: the Redis lock lets at
    most one of them prune at a time; the others record a lock-gate skip.
    """

    def __init__(
        self,
        engine: Engine,
        lock_gate: RedisLockGate,
        config: ConsolidationConfig | None = None,
        clock: Clock = system_clock,
        *,
        repo: ConsolidationRepo | None = None,
    ) -> None:
        self.engine = engine
        self.lock_gate = lock_gate
        self.config = config or ConsolidationConfig()
        self.clock = clock
        self.repo = repo or ConsolidationRepo(engine)
        self.facts = Facts(engine, clock=clock)

    # ── public API ──────────────────────────────────────────────────────────

    def maybe_run(
        self, trigger: str = "schedule", *, on_progress: OnProgress | None = None
    ) -> ConsolidationReport:
        """Prune if the lock, time and session gates all pass; otherwise record the skip.

        Raises :class:`~memtasks.locks.LockUnavailable` when Redis is unreachable and
        re-raises any error of the prune, after recording it in the ledger.
        """
        trigger = check_trigger(trigger)
        started_ms, t0 = self.clock(), time.monotonic()
        gates: list[GateDecision] = []
        with ExitStack() as stack:
            held = self._take_lock(stack, trigger, started_ms, t0)
            gates.append(self._lock_decision(held))
            if not held:
                return self._skip(trigger, started_ms, t0, gates)
            try:
                last_s = self.last_run_s()
                gates.append(time_gate(last_s, started_ms, self.config.min_hours))
                if gates[-1].passed:
                    since = sessions_since_ms(last_s)
                    count = self.repo.count_conversations_started_after(since)
                    gates.append(session_gate(count, self.config.min_sessions))
            except Exception as exc:
                self._record_failure(trigger, started_ms, t0, gates, exc)
                raise
            if not gates[-1].passed:
                return self._skip(trigger, started_ms, t0, gates)
            return self._run(trigger, started_ms, t0, gates, held, forced=False, on_progress=on_progress)
        raise AssertionError("unreachable")  # pragma: no cover

    def prune(self, trigger: str = "manual", *, on_progress: OnProgress | None = None) -> ConsolidationReport:
        """Prune now, bypassing the time and session gates (not the lock: see the module doc).

        ``on_progress(messages, outcomes)``: called after each deleted batch with the totals so far.
        """
        trigger = check_trigger(trigger)
        started_ms, t0 = self.clock(), time.monotonic()
        with ExitStack() as stack:
            held = self._take_lock(stack, trigger, started_ms, t0, forced=True)
            gates = [self._lock_decision(held)]
            if not held:
                return self._skip(trigger, started_ms, t0, gates, forced=True)
            return self._run(trigger, started_ms, t0, gates, held, forced=True, on_progress=on_progress)
        raise AssertionError("unreachable")  # pragma: no cover

    def dry_run(self, trigger: str = "dry_run", *, list_rows: bool = False) -> ConsolidationReport:
        """Report what a prune would delete (archive) now, and what the time and session gates say.

        Takes no lock and deletes nothing; writes one ledger row with ``dry_run`` set and
        outcome ``dry_run``, never read as a consolidation (the time gate reads the last-run
        fact, which only a real run writes). ``list_rows``: also the ids a run would take.
        """
        trigger = check_trigger(trigger)
        started_ms, t0 = self.clock(), time.monotonic()
        last_s = self.last_run_s()
        count = self.repo.count_conversations_started_after(sessions_since_ms(last_s))
        gates = (
            time_gate(last_s, started_ms, self.config.min_hours),
            session_gate(count, self.config.min_sessions),
        )
        cutoff, keep = self.config.message_cutoff_ms(started_ms), self.config.max_outcomes_per_sender
        listed: dict[str, tuple[int, ...]] | None = None
        if list_rows:
            listed = {
                "messages": tuple(self.repo.prunable_message_ids(cutoff)),
                "outcomes": tuple(self.repo.excess_outcome_ids(keep)),
            }
            messages, outcomes = len(listed["messages"]), len(listed["outcomes"])
        else:
            messages = self.repo.count_prunable_messages(cutoff)
            outcomes = self.repo.count_excess_outcomes(keep)
        finished_ms, duration_ms = self.clock(), elapsed_ms(t0)
        run_id = self.repo.record_run(
            started_at_ms=started_ms,
            finished_at_ms=finished_ms,
            trigger=trigger,
            dry_run=True,
            outcome=RunOutcome.DRY_RUN,
            gates_json=gates_json(gates, lock="not taken: dry run"),
            duration_ms=duration_ms,
            messages_pruned=messages,
            outcomes_pruned=outcomes,
        )
        log.info(
            "%s dry_run trigger=%s would_prune messages=%d outcomes=%d",
            LOG_PREFIX,
            trigger,
            messages,
            outcomes,
        )
        return ConsolidationReport(
            trigger=trigger,
            dry_run=True,
            outcome=RunOutcome.DRY_RUN,
            gates=gates,
            started_at_ms=started_ms,
            finished_at_ms=finished_ms,
            duration_ms=duration_ms,
            run_id=run_id,
            messages_pruned=messages,
            outcomes_pruned=outcomes,
            archive_grace_days=self.config.archive_grace_days,
            listed=listed,
        )

    def last_run_s(self) -> int | None:
        """The recorded last run in Unix seconds; ``None`` when absent, unparsable, 0 or negative."""
        return parse_last_run(self.facts.get(SYSTEM_SENDER, LAST_CONSOLIDATED_KEY))

    # ── internals ───────────────────────────────────────────────────────────

    def _take_lock(
        self, stack: ExitStack, trigger: str, started_ms: int, t0: float, *, forced: bool = False
    ) -> LockHold:
        try:
            return stack.enter_context(self.lock_gate.hold())
        except LockUnavailable as exc:
            decision = GateDecision(Gate.LOCK, False, f"lock server unreachable: {exc}")
            self._record_failure(trigger, started_ms, t0, [decision], exc, forced=forced)
            raise

    def _lock_decision(self, held: LockHold) -> GateDecision:
        detail: dict[str, DetailValue] = {"name": self.lock_gate.name, "ttl_s": self.lock_gate.ttl_s}
        if held:
            return GateDecision(Gate.LOCK, True, "lock taken", detail)
        return GateDecision(Gate.LOCK, False, "lock held by another run", detail)

    def _run(
        self,
        trigger: str,
        started_ms: int,
        t0: float,
        gates: Sequence[GateDecision],
        held: LockHold,
        *,
        forced: bool,
        on_progress: OnProgress | None = None,
    ) -> ConsolidationReport:
        cfg = self.config
        extra = forced_note(forced)
        run_id = self.repo.start_run(
            started_at_ms=started_ms, trigger=trigger, dry_run=False, gates_json=gates_json(gates, **extra)
        )
        progress = Progress()
        stamp = Stamp(started_ms, run_id) if cfg.archives else None

        def after_messages(deleted: int) -> None:
            progress.messages += deleted
            if on_progress is not None:
                on_progress(progress.messages, progress.outcomes)
            held.check()

        def after_outcomes(deleted: int) -> None:
            progress.outcomes += deleted
            if on_progress is not None:
                on_progress(progress.messages, progress.outcomes)
            held.check()

        try:
            held.check()
            log.info("%s run trigger=%s run_id=%d gates passed, pruning", LOG_PREFIX, trigger, run_id)
            messages = self.repo.prune_messages(
                cfg.message_cutoff_ms(started_ms), cfg.delete_batch_size, after_messages, archive=stamp
            )
            outcomes = self.repo.prune_outcomes(
                cfg.max_outcomes_per_sender, cfg.delete_batch_size, after_outcomes, archive=stamp
            )
            held.check()
            value = last_run_value(started_ms)
            finished_ms, duration_ms = self.clock(), elapsed_ms(t0)
            with self.engine.begin() as conn:
                if value is not None:
                    self.facts.upsert(SYSTEM_SENDER, LAST_CONSOLIDATED_KEY, value, conn=conn)
                self.repo.finish_run(
                    run_id,
                    outcome=RunOutcome.RAN,
                    finished_at_ms=finished_ms,
                    duration_ms=duration_ms,
                    messages_pruned=messages,
                    outcomes_pruned=outcomes,
                    conn=conn,
                )
        except Exception as exc:
            self._settle_failed(run_id, t0, progress, exc)
            raise
        if value is None:
            log.warning(
                "%s clock reads before 1970 (%d ms): last run not recorded; the next tick retries",
                LOG_PREFIX,
                started_ms,
            )
        log.info(
            "%s ran trigger=%s run_id=%d pruned messages=%d outcomes=%d in %d ms",
            LOG_PREFIX,
            trigger,
            run_id,
            messages,
            outcomes,
            duration_ms,
        )
        return ConsolidationReport(
            trigger=trigger,
            dry_run=False,
            outcome=RunOutcome.RAN,
            gates=tuple(gates),
            started_at_ms=started_ms,
            finished_at_ms=finished_ms,
            duration_ms=duration_ms,
            run_id=run_id,
            messages_pruned=messages,
            outcomes_pruned=outcomes,
            forced=forced,
            last_run_written=value is not None,
            archive_grace_days=cfg.archive_grace_days,
        )

    def _skip(
        self, trigger: str, started_ms: int, t0: float, gates: Sequence[GateDecision], *, forced: bool = False
    ) -> ConsolidationReport:
        finished_ms, duration_ms = self.clock(), elapsed_ms(t0)
        run_id = self.repo.record_run(
            started_at_ms=started_ms,
            finished_at_ms=finished_ms,
            trigger=trigger,
            dry_run=False,
            outcome=RunOutcome.SKIPPED,
            gates_json=gates_json(gates, **forced_note(forced)),
            duration_ms=duration_ms,
        )
        rejected = gates[-1]
        log.info(
            "%s skipped trigger=%s gate=%s: %s", LOG_PREFIX, trigger, rejected.gate.value, rejected.reason
        )
        return ConsolidationReport(
            trigger=trigger,
            dry_run=False,
            outcome=RunOutcome.SKIPPED,
            gates=tuple(gates),
            started_at_ms=started_ms,
            finished_at_ms=finished_ms,
            duration_ms=duration_ms,
            run_id=run_id,
            forced=forced,
        )

    def _record_failure(
        self,
        trigger: str,
        started_ms: int,
        t0: float,
        gates: Sequence[GateDecision],
        exc: BaseException,
        *,
        forced: bool = False,
    ) -> None:
        """A ledger row for a call that failed before pruning; never raises."""
        try:
            self.repo.record_run(
                started_at_ms=started_ms,
                finished_at_ms=self.clock(),
                trigger=trigger,
                dry_run=False,
                outcome=RunOutcome.FAILED,
                gates_json=gates_json(gates, **forced_note(forced)),
                duration_ms=elapsed_ms(t0),
                error=describe(exc),
            )
        except Exception:
            log.exception("%s could not record the failed run in the ledger", LOG_PREFIX)
        log.error("%s failed trigger=%s: %s", LOG_PREFIX, trigger, describe(exc))

    def _settle_failed(self, run_id: int, t0: float, progress: Progress, exc: BaseException) -> None:
        """Settle a started run as failed with what it deleted so far; never raises."""
        try:
            self.repo.finish_run(
                run_id,
                outcome=RunOutcome.FAILED,
                finished_at_ms=self.clock(),
                duration_ms=elapsed_ms(t0),
                messages_pruned=progress.messages,
                outcomes_pruned=progress.outcomes,
                error=describe(exc),
            )
        except Exception:
            log.exception("%s could not settle failed run %d in the ledger", LOG_PREFIX, run_id)
        log.error(
            "%s failed run_id=%d after pruning messages=%d outcomes=%d: %s",
            LOG_PREFIX,
            run_id,
            progress.messages,
            progress.outcomes,
            describe(exc),
        )
