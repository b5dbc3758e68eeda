"""The handler registry: which function runs each memory-tree job kind.

A handler gets a :class:`HandlerContext` (the job's open transaction, the tree store, the
text-model plug-ins) and the job's payload. It returns ``None`` when the job is done or a
:class:`Defer` to put the job back with its attempt refunded. Everything it writes through
``ctx.conn`` — including follow-up jobs from :meth:`HandlerContext.enqueue` — commits with
the job's settle, or not at all.

Users replace a kind's handler with :meth:`HandlerRegistry.override` or extend it with
:meth:`HandlerRegistry.wrap` (a middleware that receives the current handler). Registries
are immutable: each change returns a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection

from memtasks.domain.clock import Clock
from memtasks.domain.errors import UnknownJobKind
from memtasks.domain.jobs import JobKind, NewJob
from memtasks.domain.text_models import TextModels
from memtasks.domain.tree import TreeConfig
from memtasks.storage.jobs_repo import Job
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
        self, job: NewJob, *, conn: Connection | None = None, published: bool = False
    ) -> str | None: ...


@dataclass(slots=True)
class HandlerContext:
    """What a handler may use. ``conn`` is the job's transaction: never commit it."""

    conn: Connection
    job: Job
    store: TreeStore
    models: TextModels
    config: TreeConfig
    clock: Clock
    queue: JobEnqueuer
    publishes_followups: bool = False
    followups: list[Followup] = field(default_factory=list)

    def now(self) -> int:
        return self.clock()

    def enqueue(self, job: NewJob) -> str | None:
        """Enqueue a follow-up job in this transaction; None when its dedupe key is held."""
        job_id = self.queue.enqueue(job, conn=self.conn, published=self.publishes_followups)
        if job_id is not None and (job.available_at_ms is None or job.available_at_ms <= self.now()):
            self.followups.append(Followup(job_id, job.kind.value))
        return job_id


Handler = Callable[[HandlerContext, Mapping[str, Any]], Defer | None]
Middleware = Callable[[Handler], Handler]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    handler: Handler
    llm_bound: bool


class HandlerRegistry(Mapping[JobKind, HandlerSpec]):
    """An immutable mapping of job kind → handler and whether it needs an LLM permit."""

    __slots__ = ("_specs",)

    def __init__(self, specs: Mapping[JobKind, HandlerSpec]) -> None:
        self._specs = dict(specs)

    @classmethod
    def default(cls) -> HandlerRegistry:
        """The built-in handlers, one per kind."""
        from memtasks.services.mem_tree.handlers import BUILT_IN

        return cls({kind: HandlerSpec(handler, kind.llm_bound) for kind, handler in BUILT_IN.items()})

    def __getitem__(self, kind: JobKind) -> HandlerSpec:
        try:
            return self._specs[JobKind.parse(str(kind))]
        except KeyError:
            raise UnknownJobKind(str(kind)) from None

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def override(self, kind: JobKind, handler: Handler, *, llm_bound: bool | None = None) -> HandlerRegistry:
        """A registry where ``kind`` runs ``handler``; ``llm_bound`` defaults to the kind's own."""
        kind = JobKind.parse(str(kind))
        bound = kind.llm_bound if llm_bound is None else llm_bound
        return HandlerRegistry({**self._specs, kind: HandlerSpec(handler, bound)})

    def wrap(self, kind: JobKind, middleware: Middleware) -> HandlerRegistry:
        """A registry where ``kind`` runs ``middleware(current_handler)``."""
        spec = self[kind]
        return HandlerRegistry(
            {**self._specs, JobKind.parse(str(kind)): replace(spec, handler=middleware(spec.handler))}
        )

    def llm_bound(self, kind: JobKind) -> bool:
        return self[kind].llm_bound


__all__ = ["Defer", "Followup", "Handler", "HandlerContext", "HandlerRegistry", "HandlerSpec", "Middleware"]
