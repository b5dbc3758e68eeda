"""Consolidation queries: the session count, the two prunes (and their dry-run counts), the ledger.

Prunes delete in bounded batches, each batch its own short transaction, so a writer of
``messages`` or ``outcomes`` waits at most one batch. Given a :class:`Stamp` (the run's ledger
id and start), a batch moves its rows into the archive in the same transaction instead of
only deleting them (:func:`memtasks.storage.archive_repo.move_rows`). The outcome prune ranks every
sender's outcomes in one statement — ``row_number() OVER (PARTITION BY sender_id ORDER
BY timestamp_ms DESC, id DESC)`` — so the survivors are the newest N per sender with ties
broken by id (the higher id is newer). Each ``count_*`` query selects exactly the rows
its ``delete_*`` twin would delete, so a dry run reports what a real run removes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, delete, func, insert, select, update

from memtasks.domain.errors import ValidationError
from memtasks.domain.gates import RunOutcome
from memtasks.storage.archive_repo import Stamp, move_rows
from memtasks.storage.memory_tables import consolidation_runs, conversations, messages, outcomes
from memtasks.storage.rows import reading, transaction

INTERRUPTED = "interrupted: the run did not finish (process killed or database lost)"
MAX_ERROR_CHARS = 4_000
CODE_BATCH = "consolidation.batch.invalid"

AfterBatch = Callable[[int], None]
"""Called after each committed batch with the number of rows it deleted; may raise to stop."""

conv = conversations
msg = messages
out = outcomes
runs_t = consolidation_runs


@dataclass(frozen=True, slots=True)
class Batch:
    """One message batch: rows deleted, the last id picked (the next batch starts after it), rows picked."""

    deleted: int
    last_id: int
    picked: int


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of the consolidation ledger."""

    id: int
    started_at_ms: int
    finished_at_ms: int | None
    trigger: str
    dry_run: bool
    outcome: RunOutcome
    gates_json: str
    messages_pruned: int
    outcomes_pruned: int
    duration_ms: int | None
    error: str | None

    @property
    def gates(self) -> dict[str, Any]:
        """The gate decisions, decoded."""
        decoded = json.loads(self.gates_json)
        return decoded if isinstance(decoded, dict) else {}


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"invalid {name} {value!r}: must be an integer ≥ 1", code=CODE_BATCH)


def _check_keep(keep: int) -> None:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValidationError(
            f"invalid outcomes to keep per sender {keep!r}: must be an integer ≥ 0", code=CODE_BATCH
        )


def _clip(error: str | None) -> str | None:
    if error is None or len(error) <= MAX_ERROR_CHARS:
        return error
    return error[: MAX_ERROR_CHARS - 1] + "…"


class ConsolidationRepo:
    """The store side of consolidation. Prunes open their own transactions, batch by batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ── the session gate ────────────────────────────────────────────────────

    def count_conversations_started_after(self, after_ms: int | None) -> int:
        """Conversations of every sender started strictly after ``after_ms`` (all when ``None``)."""
        query = select(func.count()).select_from(conv)
        if after_ms is not None:
            query = query.where(conv.c.started_at_ms > after_ms)
        with reading(self.engine) as c:
            return int(c.execute(query).scalar_one())

    # ── old messages of closed conversations ────────────────────────────────

    @staticmethod
    def _prunable_messages(cutoff_ms: int) -> Select[tuple[int]]:
        return (
            select(msg.c.id)
            .join(conv, msg.c.conversation_id == conv.c.id)
            .where(conv.c.status == "closed", conv.c.updated_at_ms < cutoff_ms)
        )

    def count_prunable_messages(self, cutoff_ms: int) -> int:
        """Messages of ``closed`` conversations last updated strictly before ``cutoff_ms``."""
        query = select(func.count()).select_from(self._prunable_messages(cutoff_ms).subquery())
        with reading(self.engine) as c:
            return int(c.execute(query).scalar_one())

    def prunable_message_ids(self, cutoff_ms: int) -> list[int]:
        """The ids :meth:`prune_messages` would remove now, lowest first (a dry run's list)."""
        with reading(self.engine) as c:
            return [
                int(i) for i in c.execute(self._prunable_messages(cutoff_ms).order_by(msg.c.id)).scalars()
            ]

    def delete_prunable_messages(
        self, cutoff_ms: int, limit: int, *, after_id: int = 0, archive: Stamp | None = None
    ) -> Batch:
        """Delete (or, with ``archive``, move into the archive) at most ``limit`` of those
        messages with ids above ``after_id`` (lowest first), in one transaction.

        The ids are picked first, then deleted by primary key, so the next batch starts
        after the last id of this one (a keyset) instead of walking again past the rows
        this batch deleted — on PostgreSQL those stay in the index until vacuum, and
        re-walking them made a million-row prune quadratic.
        """
        _check_positive("batch size", limit)
        picked = self._prunable_messages(cutoff_ms).where(msg.c.id > after_id).order_by(msg.c.id).limit(limit)
        with self.engine.begin() as c:
            ids = [int(i) for i in c.execute(picked).scalars()]
            if not ids:
                return Batch(0, after_id, 0)
            if archive is not None:
                deleted = move_rows(c, msg, ids, archive)
            else:
                deleted = int(c.execute(delete(msg).where(msg.c.id.in_(ids))).rowcount)
        return Batch(deleted, ids[-1], len(ids))

    def prune_messages(
        self,
        cutoff_ms: int,
        batch_size: int,
        after_batch: AfterBatch | None = None,
        *,
        archive: Stamp | None = None,
    ) -> int:
        """Delete (or archive) every prunable message, ``batch_size`` per transaction; the total.

        Conversation rows stay. ``after_batch`` runs between batches (and may raise to stop).
        A message that becomes prunable during the run behind the keyset waits for the next run.
        """
        _check_positive("batch size", batch_size)
        total, after_id = 0, 0
        while True:
            batch = self.delete_prunable_messages(cutoff_ms, batch_size, after_id=after_id, archive=archive)
            total += batch.deleted
            after_id = batch.last_id
            if batch.deleted and after_batch is not None:
                after_batch(batch.deleted)
            if batch.picked < batch_size:
                return total

    # ── outcomes beyond the newest N per sender ─────────────────────────────

    @staticmethod
    def _excess_outcomes(keep: int) -> Select[tuple[int]]:
        rank = (
            func.row_number()
            .over(partition_by=out.c.sender_id, order_by=(out.c.timestamp_ms.desc(), out.c.id.desc()))
            .label("rank")
        )
        ranked = select(out.c.id, rank).subquery("ranked")
        return select(ranked.c.id).where(ranked.c.rank > keep)

    def count_excess_outcomes(self, keep_per_sender: int) -> int:
        """Outcomes ranked beyond ``keep_per_sender`` in their sender's newest-first order."""
        _check_keep(keep_per_sender)
        query = select(func.count()).select_from(self._excess_outcomes(keep_per_sender).subquery())
        with reading(self.engine) as c:
            return int(c.execute(query).scalar_one())

    def excess_outcome_ids(self, keep_per_sender: int) -> list[int]:
        """The ids :meth:`prune_outcomes` would remove now, lowest first (a dry run's list)."""
        _check_keep(keep_per_sender)
        excess = self._excess_outcomes(keep_per_sender).subquery("excess")
        with reading(self.engine) as c:
            return [int(i) for i in c.execute(select(excess.c.id).order_by(excess.c.id)).scalars()]

    def delete_excess_outcomes(
        self, keep_per_sender: int, limit: int, *, archive: Stamp | None = None
    ) -> int:
        """Delete (or, with ``archive``, move into the archive) at most ``limit`` excess
        outcomes, all senders ranked in one statement, in one transaction."""
        _check_keep(keep_per_sender)
        _check_positive("batch size", limit)
        excess = self._excess_outcomes(keep_per_sender).subquery("excess")
        picked = select(excess.c.id).order_by(excess.c.id).limit(limit)
        with self.engine.begin() as c:
            if archive is not None:
                return move_rows(c, out, [int(i) for i in c.execute(picked).scalars()], archive)
            return int(c.execute(delete(out).where(out.c.id.in_(picked.scalar_subquery()))).rowcount)

    def prune_outcomes(
        self,
        keep_per_sender: int,
        batch_size: int,
        after_batch: AfterBatch | None = None,
        *,
        archive: Stamp | None = None,
    ) -> int:
        """Delete (or archive) every excess outcome, ``batch_size`` per transaction; the total."""
        return _drain(
            lambda: self.delete_excess_outcomes(keep_per_sender, batch_size, archive=archive),
            batch_size,
            after_batch,
        )

    # ── the ledger ──────────────────────────────────────────────────────────

    def start_run(
        self,
        *,
        started_at_ms: int,
        trigger: str,
        dry_run: bool,
        gates_json: str,
        conn: Connection | None = None,
    ) -> int:
        """Open a ledger row for a run that passed its gates; the row's id.

        The row reads ``failed`` / :data:`INTERRUPTED` until :meth:`finish_run` settles it,
        so a run killed half-way is recorded as such.
        """
        values = {
            "started_at_ms": started_at_ms,
            "trigger": trigger,
            "dry_run": dry_run,
            "outcome": RunOutcome.FAILED.value,
            "gates_json": gates_json,
            "error": INTERRUPTED,
        }
        with transaction(self.engine, conn) as c:
            key = c.execute(insert(runs_t).values(values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: RunOutcome,
        finished_at_ms: int,
        duration_ms: int,
        messages_pruned: int,
        outcomes_pruned: int,
        error: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Settle the ledger row of ``run_id``."""
        values = {
            "outcome": RunOutcome(outcome).value,
            "finished_at_ms": finished_at_ms,
            "duration_ms": duration_ms,
            "messages_pruned": messages_pruned,
            "outcomes_pruned": outcomes_pruned,
            "error": _clip(error),
        }
        with transaction(self.engine, conn) as c:
            done = c.execute(update(runs_t).where(runs_t.c.id == run_id).values(values)).rowcount
        if done != 1:
            raise ValidationError(
                f"consolidation run {run_id} not found in the ledger", code="consolidation.run.not_found"
            )

    def record_run(
        self,
        *,
        started_at_ms: int,
        finished_at_ms: int,
        trigger: str,
        dry_run: bool,
        outcome: RunOutcome,
        gates_json: str,
        duration_ms: int,
        messages_pruned: int = 0,
        outcomes_pruned: int = 0,
        error: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Write a complete ledger row in one insert (a skipped run, a dry run); its id."""
        values = {
            "started_at_ms": started_at_ms,
            "finished_at_ms": finished_at_ms,
            "trigger": trigger,
            "dry_run": dry_run,
            "outcome": RunOutcome(outcome).value,
            "gates_json": gates_json,
            "messages_pruned": messages_pruned,
            "outcomes_pruned": outcomes_pruned,
            "duration_ms": duration_ms,
            "error": _clip(error),
        }
        with transaction(self.engine, conn) as c:
            key = c.execute(insert(runs_t).values(values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def runs(self, limit: int = 100) -> list[RunRecord]:
        """The newest ledger rows first."""
        _check_positive("limit", limit)
        query = select(runs_t).order_by(runs_t.c.id.desc()).limit(limit)
        with reading(self.engine) as c:
            return [_run_record(row) for row in c.execute(query)]

    def last_run(self) -> RunRecord | None:
        """The newest run that consolidated (outcome ``ran``): never a dry run, a skip or a failure."""
        query = (
            select(runs_t)
            .where(runs_t.c.outcome == RunOutcome.RAN.value)
            .order_by(runs_t.c.started_at_ms.desc(), runs_t.c.id.desc())
            .limit(1)
        )
        with reading(self.engine) as c:
            row = c.execute(query).first()
        return None if row is None else _run_record(row)

    def count_by_outcome(self) -> dict[RunOutcome, int]:
        """Ledger rows by outcome, every outcome present (0 when none)."""
        query = select(runs_t.c.outcome, func.count()).group_by(runs_t.c.outcome)
        with reading(self.engine) as c:
            found = {RunOutcome(outcome): int(count) for outcome, count in c.execute(query)}
        return {outcome: found.get(outcome, 0) for outcome in RunOutcome}

    def get_run(self, run_id: int) -> RunRecord | None:
        with reading(self.engine) as c:
            row = c.execute(select(runs_t).where(runs_t.c.id == run_id)).one_or_none()
        return None if row is None else _run_record(row)


def _drain(delete_batch: Callable[[], int], batch_size: int, after_batch: AfterBatch | None) -> int:
    """Run ``delete_batch`` until a batch comes back short; the total deleted."""
    _check_positive("batch size", batch_size)
    total = 0
    while True:
        deleted = delete_batch()
        total += deleted
        if deleted and after_batch is not None:
            after_batch(deleted)
        if deleted < batch_size:
            return total


def _run_record(row: Row[Any]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        id=int(m["id"]),
        started_at_ms=int(m["started_at_ms"]),
        finished_at_ms=None if m["finished_at_ms"] is None else int(m["finished_at_ms"]),
        trigger=str(m["trigger"]),
        dry_run=bool(m["dry_run"]),
        outcome=RunOutcome(m["outcome"]),
        gates_json=str(m["gates_json"]),
        messages_pruned=int(m["messages_pruned"]),
        outcomes_pruned=int(m["outcomes_pruned"]),
        duration_ms=None if m["duration_ms"] is None else int(m["duration_ms"]),
        error=m["error"],
    )
