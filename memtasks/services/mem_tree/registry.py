"""The handler registry: which function runs each memory-tree job kind.

What a handler gets and returns is in :mod:`memtasks.services.mem_tree.context`. Users
replace a kind's handler with :meth:`HandlerRegistry.override` or extend it with
:meth:`HandlerRegistry.wrap` (a middleware that receives the current handler). Registries
are immutable: each change returns a new one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from memtasks.domain.errors import UnknownJobKind
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree.context import Handler, Middleware
from memtasks.services.mem_tree.handlers import BUILT_IN


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


__all__ = ["HandlerRegistry", "HandlerSpec"]
