"""Operator actions and reports on a job table, apart from the hot path.

Requeue, retry, cancel, prune, purge, lookups and counts: rare calls, written with SQLAlchemy
Core over the table's description. The moves they make are declared in :data:`MOVES` and
checked against the lifecycle like the engine's statements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, and_, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from memtasks.domain.clock import Clock
from memtasks.domain.errors import JobNotFound, ValidationError
from memtasks.domain.jobs import FailureClass
from memtasks.domain.lifecycle import ACTIVE, TERMINAL, Phase, check_moves
from memtasks.domain.wire import lookup_id
from memtasks.storage.archive_repo import Stamp, move_rows
from memtasks.storage.queue.table import QueueTable
from memtasks.storage.rows import chunks, reading

MOVES: dict[str, frozenset[tuple[Phase, Phase]]] = {
    "requeue_failed": frozenset({(Phase.FAILED, Phase.READY)}),
    "retry": frozenset({(Phase.FAILED, Phase.READY)}),
    "cancel": frozenset({(Phase.READY, Phase.CANCELLED)}),
    "cancel_ready": frozenset({(Phase.READY, Phase.CANCELLED)}),
}
for _name, _moves in MOVES.items():
    check_moves(f"queue admin {_name}", _moves)

R = TypeVar("R")


class QueueAdmin(Generic[R]):
    """What operators and sweeps do to a job table besides running its jobs."""

    def __init__(
        self, engine: Engine, table: QueueTable, decode: Callable[[Mapping[str, Any]], R], clock: Clock
    ) -> None:
        self.engine = engine
        self.table = table
        self.decode = decode
        self.now = clock
        t = table.table
        self.t = t
        self.status = t.c[table.status]
        self.due = t.c[table.due]
        self.reason = t.c[table.reason]

    def word(self, phase: Phase) -> str:
        return self.table.word(phase)

    def not_found(self, job_id: str) -> JobNotFound:
        return self.table.not_found(job_id)

    # ── reads ────────────────────────────────────────────────────────────────

    def get(self, job_id: str) -> R | None:
        row = self._row(job_id)
        return None if row is None else self.decode(row)

    def get_many(self, job_ids: Sequence[str]) -> list[R]:
        """The rows of ``job_ids`` that exist (any order), in one query per chunk of ids."""
        wanted = [i for i in job_ids if lookup_id(i) is not None]
        found: list[R] = []
        with reading(self.engine) as c:
            for part in chunks(wanted):
                found += [
                    self.decode(dict(r._mapping))
                    for r in c.execute(select(self.t).where(self.t.c.id.in_(part)))
                ]
        return found

    def list_jobs(self, *, status: str | None = None, kind: str | None = None, limit: int = 50) -> list[R]:
        """The newest rows first, optionally of one state word and kind."""
        stmt = select(self.t).order_by(self.t.c.created_at_ms.desc(), self.t.c.id).limit(limit)
        if status is not None:
            stmt = stmt.where(self.status == status)
        if kind is not None:
            stmt = stmt.where(self.t.c.kind == kind)
        with reading(self.engine) as c:
            return [self.decode(dict(row._mapping)) for row in c.execute(stmt)]

    def page(
        self,
        *,
        before_id: str | None = None,
        status: str | None = None,
        kinds: Sequence[str] | None = None,
        failure_class: str | None = None,
        created_before_ms: int | None = None,
        search: str | None = None,
        limit: int = 50,
    ) -> list[R]:
        """One keyset page, newest first: up to ``limit`` rows whose id sorts below
        ``before_id`` (ids are time-ordered, so the primary key is the order and a page costs
        the same at any depth). ``search`` matches a job id, or the dedupe key of the job that
        holds it (ready or running), exactly — each through an index."""
        t = self.t
        stmt = select(t).order_by(t.c.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(t.c.id < before_id)
        if status is not None:
            stmt = stmt.where(self.status == status)
        if kinds is not None:
            stmt = stmt.where(t.c.kind.in_(list(kinds)))
        if failure_class is not None:
            stmt = stmt.where(t.c.failure_class == failure_class)
        if created_before_ms is not None:
            stmt = stmt.where(t.c.created_at_ms <= created_before_ms)
        if search is not None:
            matches: list[Any] = [t.c.id == search]
            if self.table.dedupe is not None and self.table.dedupe_where is not None:
                # The job that holds the key: through the partial index of held keys.
                matches.append(and_(t.c[self.table.dedupe] == search, text(self.table.dedupe_where)))
            stmt = stmt.where(or_(*matches))
        with reading(self.engine) as c:
            return [self.decode(dict(row._mapping)) for row in c.execute(stmt)]

    def followups(self, job_id: str, limit: int = 100) -> list[R]:
        """The jobs ``job_id``'s handler enqueued (oldest first); none for a table without parents."""
        if "parent_id" not in self.t.c:
            return []
        stmt = select(self.t).where(self.t.c.parent_id == job_id).order_by(self.t.c.id).limit(limit)
        with reading(self.engine) as c:
            return [self.decode(dict(row._mapping)) for row in c.execute(stmt)]

    def count_by_state(self) -> dict[str, int]:
        """Rows per state word, every word present (0 when none)."""
        with reading(self.engine) as c:
            rows = c.execute(select(self.status, func.count()).group_by(self.status)).all()
        counts = {self.word(p): 0 for p in Phase}
        for word, n in rows:
            counts[word] = int(n)
        return counts

    def count_unrecoverable(self) -> int:
        """Failed rows that a transient-only requeue leaves parked (its exact complement)."""
        stmt = select(func.count()).where(self.status == self.word(Phase.FAILED), ~self._transient())
        with reading(self.engine) as c:
            return int(c.execute(stmt).scalar_one())

    def count_total(self) -> int:
        with reading(self.engine) as c:
            return int(c.execute(select(func.count()).select_from(self.t)).scalar_one())

    def _transient(self) -> Any:
        fc = self.t.c.failure_class
        return or_(fc.is_(None), fc != FailureClass.UNRECOVERABLE.value)

    # ── back to ready ────────────────────────────────────────────────────────

    def _ready_again(self, now: int) -> dict[str, Any]:
        return {
            self.table.status: self.word(Phase.READY),
            self.table.due: now,
            "attempts": 0,
            "locked_until_ms": None,
            "lease_token": None,
            "dispatched_at_ms": None,
            "completed_at_ms": None,
            self.table.reason: None,
            "failure_class": None,
            "updated_at_ms": now,
        }

    def _failed_where(
        self,
        *,
        transient_only: bool = False,
        kind: str | None = None,
        failure_class: str | None = None,
        failed_before_age_ms: int | None = None,
    ) -> list[Any]:
        """The conditions naming the failed rows a requeue takes (every value a bound parameter).

        ``failure_class``: ``transient`` takes the rows ``transient_only`` takes (no class
        recorded counts as transient), ``unrecoverable`` the rest. ``failed_before_age_ms``:
        rows that failed at least that long ago (by the database's clock).
        """
        where: list[Any] = [self.status == self.word(Phase.FAILED)]
        if transient_only or failure_class == FailureClass.TRANSIENT.value:
            where.append(self._transient())
        if failure_class is not None and failure_class != FailureClass.TRANSIENT.value:
            where.append(self.t.c.failure_class == FailureClass(failure_class).value)
        if kind is not None:
            where.append(self.t.c.kind == kind)
        if failed_before_age_ms is not None:
            where.append(self.t.c.completed_at_ms <= self.now() - failed_before_age_ms)
        return where

    def count_failed(
        self,
        *,
        transient_only: bool = False,
        kind: str | None = None,
        failure_class: str | None = None,
        failed_before_age_ms: int | None = None,
    ) -> int:
        """How many failed rows a requeue with the same filters would look at."""
        where = self._failed_where(
            transient_only=transient_only,
            kind=kind,
            failure_class=failure_class,
            failed_before_age_ms=failed_before_age_ms,
        )
        with reading(self.engine) as c:
            return int(c.execute(select(func.count()).select_from(self.t).where(*where)).scalar_one())

    def active_holder(self, dedupe_key: str) -> R | None:
        """The ready or running row holding ``dedupe_key`` (None: no row holds it, or the
        table has no dedupe key)."""
        if self.table.dedupe is None or lookup_id(dedupe_key) is None:
            return None
        key = self.t.c[self.table.dedupe]
        stmt = (
            select(self.t).where(key == dedupe_key, self.status.in_(self.table.words.words(ACTIVE))).limit(1)
        )
        with reading(self.engine) as c:
            row = c.execute(stmt).first()
        return None if row is None else self.decode(dict(row._mapping))

    def requeue_failed(
        self,
        *,
        transient_only: bool = False,
        kind: str | None = None,
        failure_class: str | None = None,
        failed_before_age_ms: int | None = None,
    ) -> int:
        """Failed → ready with fresh attempts: every failed row, or those of ``kind``, of
        ``failure_class``, failed at least ``failed_before_age_ms`` ago. ``transient_only``
        skips unrecoverable ones.

        A failed row whose dedupe key an active row holds stays failed (the active row does
        that work); of several failed rows sharing a key only the newest returns.
        """

        def where() -> list[Any]:
            return self._failed_where(
                transient_only=transient_only,
                kind=kind,
                failure_class=failure_class,
                failed_before_age_ms=failed_before_age_ms,
            )

        for _ in range(3):
            try:
                return self._requeue_failed_once(where())
            except IntegrityError:
                continue  # a producer enqueued the same dedupe key meanwhile: look again
        return self._requeue_failed_once(where())

    def _requeue_failed_once(self, where: Sequence[Any]) -> int:
        t, dedupe = self.t, self.table.dedupe
        key = t.c[dedupe] if dedupe is not None else None
        with self.engine.begin() as c:
            picked = [t.c.id] if key is None else [t.c.id, key]
            rows = c.execute(select(*picked).where(*where).order_by(t.c.completed_at_ms.desc())).all()
            chosen = [r[0] for r in rows] if key is None else self._one_per_key(c, rows, key)
            values = self._ready_again(self.now())
            return sum(
                c.execute(
                    update(t).where(t.c.id.in_(part), self.status == self.word(Phase.FAILED)).values(values)
                ).rowcount
                for part in chunks(chosen)
            )

    def _one_per_key(self, c: Any, rows: Sequence[Any], key: Any) -> list[str]:
        keys = sorted({r[1] for r in rows if r[1] is not None})
        active = self.table.words.words(ACTIVE)
        held: set[str] = set()
        for part in chunks(keys):
            held.update(c.execute(select(key).where(key.in_(part), self.status.in_(active))).scalars())
        chosen: list[str] = []
        for job_id, dedupe_key in rows:
            if dedupe_key is not None:
                if dedupe_key in held:
                    continue
                held.add(dedupe_key)
            chosen.append(job_id)
        return chosen

    def retry(self, job_id: str) -> R:
        """An operator's retry of one failed job: ready now with fresh attempts.

        :class:`JobNotFound` when there is no such job; :class:`ValidationError` when it is not
        failed, or when its dedupe key is held by another ready or running job.
        """
        current = self._row(job_id)
        if current is None:
            raise self.not_found(job_id)
        word = current[self.table.status]
        if word != self.word(Phase.FAILED):
            raise ValidationError(f"{self.table.noun} {job_id} is {word}: only failed jobs can be retried")
        stmt = (
            update(self.t)
            .where(self.t.c.id == job_id, self.status == self.word(Phase.FAILED))
            .values(self._ready_again(self.now()))
            .returning(*self.t.c)
        )
        try:
            with self.engine.begin() as c:
                row = c.execute(stmt).first()
        except IntegrityError:
            key = current.get(self.table.dedupe) if self.table.dedupe else None
            raise ValidationError(
                f"{self.table.noun} {job_id} cannot be retried: its dedupe key {key!r} is held by "
                "another ready or running job"
            ) from None
        if row is None:
            raise ValidationError(f"{self.table.noun} {job_id} changed meanwhile; look again")
        return self.decode(dict(row._mapping))

    def _row(self, job_id: str) -> Mapping[str, Any] | None:
        if lookup_id(job_id) is None:
            return None  # no row has such an id (not a string, NUL, lone surrogate)
        with reading(self.engine) as c:
            row = c.execute(select(self.t).where(self.t.c.id == job_id)).first()
        return None if row is None else dict(row._mapping)

    # ── cancel, prune, purge ─────────────────────────────────────────────────

    def _cancelled(self, now: int) -> dict[str, Any]:
        values: dict[str, Any] = {
            self.table.status: self.word(Phase.CANCELLED),
            "completed_at_ms": now,
            "updated_at_ms": now,
            "locked_until_ms": None,
            "lease_token": None,
        }
        if "cancelled" in self.table.reasons:
            values[self.table.reason] = self.table.reasons["cancelled"]
        return values

    def cancel(self, job_id: str) -> bool:
        """Cancel one ready job: True when it was ready. :class:`JobNotFound` when there is none."""
        if lookup_id(job_id) is None:
            raise self.not_found(job_id)
        with self.engine.begin() as c:
            changed = c.execute(
                update(self.t)
                .where(self.t.c.id == job_id, self.status == self.word(Phase.READY))
                .values(self._cancelled(self.now()))
            ).rowcount
            if changed == 0 and c.execute(select(self.t.c.id).where(self.t.c.id == job_id)).first() is None:
                raise self.not_found(job_id)
        return bool(changed == 1)

    def cancel_ready(self, *, kind: str | None = None) -> int:
        """Cancel every ready job (of one kind); returns how many."""
        stmt = update(self.t).where(self.status == self.word(Phase.READY)).values(self._cancelled(self.now()))
        if kind is not None:
            stmt = stmt.where(self.t.c.kind == kind)
        with self.engine.begin() as c:
            return int(c.execute(stmt).rowcount)

    def purge_kinds(self, kinds: Sequence[str]) -> int:
        """Delete every row of ``kinds``; returns how many."""
        with self.engine.begin() as c:
            return int(c.execute(delete(self.t).where(self.t.c.kind.in_(sorted(kinds)))).rowcount)

    def prune_finished(self, older_than_ms: int, *, batch: int = 5_000, archive: bool = False) -> int:
        """Delete (with ``archive``, move into the archive) terminal rows finished before
        ``now − older_than_ms``, in bounded batches; how many."""
        now = self.now()
        cutoff = now - older_than_ms
        terminal = self.table.words.words(TERMINAL)
        finished = and_(self.status.in_(terminal), self.t.c.completed_at_ms < cutoff)
        picked = select(self.t.c.id).where(finished).limit(batch)
        total = 0
        while True:
            with self.engine.begin() as c:
                if archive:
                    ids = list(c.execute(picked).scalars())
                    n, full = move_rows(c, self.t, ids, Stamp(now), still=finished), len(ids) == batch
                else:
                    n = int(
                        c.execute(delete(self.t).where(self.t.c.id.in_(picked.scalar_subquery()))).rowcount
                    )
                    full = n == batch
            total += n
            if not full:  # a row changed meanwhile (an operator's retry) does not end the prune early
                return total


__all__ = ["MOVES", "QueueAdmin"]
