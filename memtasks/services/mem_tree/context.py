"""What a memory-tree handler gets and may return.

A handler gets a :class:`HandlerContext` (the job's transaction, the tree store, the
text-model plug-ins) and the job's payload. It returns ``None`` when the job is done or a
:class:`Defer` to put the job back with its attempt refunded. Everything it writes through
``ctx.conn`` — including follow-up jobs from :meth:`HandlerContext.enqueue` — commits with
the job's settle, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection

from memtasks.domain.clock import Clock
from memtasks.domain.jobs import NewJob
from memtasks.domain.text_models import TextModels
from memtasks.domain.tree import TreeConfig
from memtasks.services.lease_keeper import LeaseWatch
from memtasks.storage.mem_tree_queue import Job
from memtasks.storage.tree_repo import TreeStore


@dataclass(frozen=True, slots=True)
class Defer:
    """Put the job back until ``until_ms`` without spending an attempt."""

    until_ms: int
    reason: str


class Followup(NamedTuple):
    """A job a handler enqueued that is due now: the caller publishes it after the commit."""

    job_id: str
    kind: str


class JobEnqueuer(Protocol):
    def enqueue(
        self,
        job: NewJob,
        *,
        conn: Connection | None = None,
        published: bool = False,
        parent_id: str | None = None,
    ) -> str | None: ...


@dataclass(slots=True)
class HandlerContext:
    """What a handler may use. ``conn`` is the job's transaction: never commit it.

    The transaction begins when a handler first uses ``conn``; a handler that writes nothing
    costs no transaction, and its job is settled in one statement.
    """

    job: Job
    store: TreeStore
    models: TextModels
    config: TreeConfig
    clock: Clock
    queue: JobEnqueuer
    begin: Callable[[], Connection]
    """Opens the job's transaction (called once, on first use of ``conn``)."""
    publishes_followups: bool = False
    followups: list[Followup] = field(default_factory=list)
    opened: Connection | None = None
    """The job's transaction once begun; None while the handler has not touched it."""
    lease: LeaseWatch = field(default_factory=LeaseWatch)
    """The job's lease as its heartbeat sees it: ``ctx.lease.lost`` turns true once the job
    was taken over (this process stalled past its lease); a long handler may check it and
    stop early — whatever it still writes would be rolled back at the settle."""

    @property
    def conn(self) -> Connection:
        if self.opened is None:
            self.opened = self.begin()
        return self.opened

    def now(self) -> int:
        return self.clock()

    def enqueue(self, job: NewJob) -> str | None:
        """Enqueue a follow-up job in this transaction; None when its dedupe key is held."""
        job_id = self.queue.enqueue(
            job, conn=self.conn, published=self.publishes_followups, parent_id=self.job.id
        )
        if job_id is not None and (job.available_at_ms is None or job.available_at_ms <= self.now()):
            self.followups.append(Followup(job_id, job.kind.value))
        return job_id


Handler = Callable[[HandlerContext, Mapping[str, Any]], Defer | None]
Middleware = Callable[[Handler], Handler]

__all__ = ["Defer", "Followup", "Handler", "HandlerContext", "JobEnqueuer", "Middleware"]
