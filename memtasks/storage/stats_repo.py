"""Read-only reads of the job tables for ``memtasks status`` and the metrics exporter.

:func:`queue_stats` counts the rows: one pass over ``mem_tree_jobs`` for every count by
kind, status and failure class (the table has no index on those columns, deliberately:
each index costs every insert, claim and settle), then the partial indexes of the ready
and running rows for the oldest wait and the expired leases. :func:`finished_after` reads
the rows finished since a watermark, through the index on ``completed_at_ms``, a bounded
number at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select, union_all

from memtasks.domain.decay import DecayState, SummaryMethod
from memtasks.domain.jobs import JobStatus
from memtasks.storage.rows import reading
from memtasks.storage.tables import decay_jobs as d
from memtasks.storage.tables import mem_tree_jobs as t


@dataclass(frozen=True, slots=True)
class KindStats:
    """One job kind: rows by status, how long the oldest due ready row has waited, and so on."""

    kind: str
    by_status: dict[str, int]
    oldest_ready_age_ms: int | None
    expired_leases: int
    waiting_retry: int
    failed_by_class: dict[str, int]


@dataclass(frozen=True, slots=True)
class LaneStats:
    """One lane of fair share (an agent or tenant; ``""`` the shared lane): its ready memory-tree
    jobs, how many of them are due, and how long the oldest due one has waited."""

    lane: str
    ready: int
    due: int
    oldest_due_age_ms: int | None


TOP_LANES = 20
"""Lanes reported: those with the most ready jobs (a bound on the metrics' label values)."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    kinds: tuple[KindStats, ...]
    decay_by_state: dict[str, int]
    decay_expired_leases: int
    lanes: tuple[LaneStats, ...] = ()
    """The :data:`TOP_LANES` lanes with the most ready jobs, largest first."""


def _pairs(rows: Iterable[Any]) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in rows}


OPEN_STATUSES = (JobStatus.READY.value, JobStatus.RUNNING.value, JobStatus.FAILED.value)


def queue_stats(engine: Engine, now_ms: int, *, open_only: bool = False) -> QueueStats:
    """Every count in one read transaction (a consistent snapshot).

    ``open_only``: count only ready, running and failed rows, each status through its partial
    index, never the done and cancelled ones (the bulk of a table that keeps its finished
    jobs): what the web console shows, at a cost that follows the open work, not the table.
    """
    retried = func.sum(case((t.c.attempts > 0, 1), else_=0))
    counted = (t.c.kind, t.c.status, t.c.failure_class)
    with reading(engine) as c, c.begin():
        # Counts by kind, status and failure class, and how many of each group failed
        # before (for the ready rows: waiting for a retry).
        if open_only:
            groups = c.execute(
                union_all(
                    *(
                        select(*counted, func.count(), retried).where(t.c.status == status).group_by(*counted)
                        for status in OPEN_STATUSES
                    )
                )
            ).all()
        else:  # one pass over the table
            groups = c.execute(select(*counted, func.count(), retried).group_by(*counted)).all()
        oldest = _pairs(  # the partial index of the ready rows
            c.execute(
                select(t.c.kind, func.min(t.c.available_at_ms))
                .where(t.c.status == "ready", t.c.available_at_ms <= now_ms)
                .group_by(t.c.kind)
            )
        )
        expired = _pairs(  # the partial index of the running rows
            c.execute(
                select(t.c.kind, func.count())
                .where(t.c.status == "running", t.c.locked_until_ms < now_ms)
                .group_by(t.c.kind)
            )
        )
        is_due = t.c.available_at_ms <= now_ms
        lanes = c.execute(  # the partial index of each lane's ready rows
            select(
                t.c.fair_key,
                func.count(),
                func.sum(case((is_due, 1), else_=0)),
                func.min(case((is_due, t.c.available_at_ms), else_=None)),
            )
            .where(t.c.status == "ready")
            .group_by(t.c.fair_key)
            .order_by(func.count().desc(), t.c.fair_key)
            .limit(TOP_LANES)
        ).all()
        decay = _pairs(c.execute(select(d.c.state, func.count()).group_by(d.c.state)))
        decay_expired = c.execute(
            select(func.count()).where(d.c.state == "in_progress", d.c.locked_until_ms < now_ms)
        ).scalar_one()
    by_status: dict[str, dict[str, int]] = {}
    waiting_retry: dict[str, int] = {}
    failed_by_class: dict[str, dict[str, int]] = {}
    for kind, status, failure_class, count, retrying in groups:
        statuses = by_status.setdefault(kind, {})
        statuses[status] = statuses.get(status, 0) + int(count)
        if status == JobStatus.READY.value:
            waiting_retry[kind] = waiting_retry.get(kind, 0) + int(retrying or 0)
        if status == JobStatus.FAILED.value:
            classes = failed_by_class.setdefault(kind, {})
            key = failure_class or "unknown"
            classes[key] = classes.get(key, 0) + int(count)
    kinds = tuple(
        KindStats(
            kind=str(kind),
            by_status=by_status[kind],
            oldest_ready_age_ms=None if kind not in oldest else now_ms - int(oldest[kind]),
            expired_leases=int(expired.get(kind, 0)),
            waiting_retry=waiting_retry.get(kind, 0),
            failed_by_class=failed_by_class.get(kind, {}),
        )
        for kind in sorted(by_status)
    )
    return QueueStats(
        kinds=kinds,
        decay_by_state={str(k): int(v) for k, v in decay.items()},
        decay_expired_leases=int(decay_expired),
        lanes=tuple(
            LaneStats(
                lane=str(lane),
                ready=int(ready),
                due=int(due or 0),
                oldest_due_age_ms=None if oldest_due is None else now_ms - int(oldest_due),
            )
            for lane, ready, due, oldest_due in lanes
        ),
    )


# ── finished jobs, for the run-time and wait histograms ─────────────────────


class JobTable(StrEnum):
    MEM_TREE = "mem_tree"
    DECAY = "decay"


@dataclass(frozen=True, slots=True, order=True)
class Watermark:
    """The last finished row read: its completion time, then its id (the tie-break)."""

    completed_at_ms: int
    id: str = ""


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """A job that ran and finished (done or failed), with the times its histograms need.

    ``due_at_ms`` is when the job could first have started: the later of its creation and
    its due time (``available_at_ms``; a decay job's ``scheduled_for_ms``). For a job that
    ran more than once, ``started_at_ms`` and ``due_at_ms`` are those of its last attempt.
    """

    table: JobTable
    id: str
    kind: str
    llm: bool
    due_at_ms: int
    started_at_ms: int
    completed_at_ms: int

    @property
    def watermark(self) -> Watermark:
        return Watermark(self.completed_at_ms, self.id)


_RAN = {
    JobTable.MEM_TREE: (JobStatus.DONE.value, JobStatus.FAILED.value),
    JobTable.DECAY: (DecayState.COMPLETED.value, DecayState.FAILED.value),
}


def finished_after(
    engine: Engine, table: JobTable, after: Watermark, until_ms: int, limit: int
) -> list[FinishedJob]:
    """At most ``limit`` jobs of ``table`` that ran and finished after ``after`` and no later
    than ``until_ms``, in (completion time, id) order.

    The range on ``completed_at_ms`` comes first, so the read walks the index on it (the
    partial ``ix_mem_tree_jobs_finished``; ``ix_decay_jobs_completed_at_ms``) from the
    watermark: its cost follows the rows finished since, not the table's size.
    """
    if table is JobTable.MEM_TREE:  # the queue comes from the kind
        src, due, state, method = t, t.c.available_at_ms, t.c.status, t.c.kind
    else:  # the queue comes from the summary method
        src, due, state, method = d, d.c.scheduled_for_ms, d.c.state, d.c.summary_method
    done = src.c.completed_at_ms
    query = (
        select(src.c.id, src.c.kind, method, src.c.created_at_ms, due, src.c.started_at_ms, done)
        .where(
            done >= after.completed_at_ms,
            done <= until_ms,
            or_(done > after.completed_at_ms, src.c.id > after.id),
            and_(state.in_(_RAN[table]), src.c.started_at_ms.is_not(None)),
        )
        .order_by(done, src.c.id)
        .limit(limit)
    )
    with reading(engine) as c:
        rows = c.execute(query).all()
    return [
        FinishedJob(
            table=table,
            id=str(row[0]),
            kind=str(row[1]),
            llm=table is JobTable.DECAY and row[2] == SummaryMethod.LLM_SUMMARY.value,
            due_at_ms=max(int(row[3]), int(row[4])),
            started_at_ms=int(row[5]),
            completed_at_ms=int(row[6]),
        )
        for row in rows
    ]


__all__ = [
    "TOP_LANES",
    "FinishedJob",
    "JobTable",
    "KindStats",
    "LaneStats",
    "QueueStats",
    "Watermark",
    "finished_after",
    "queue_stats",
]
