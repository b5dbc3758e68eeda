"""A registry whose handlers do nothing (``MEMTASKS_HANDLERS=bench.handlers:noop_registry``).

The throughput benchmarks measure the pipeline — claim, settle, messages — not a handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry


def noop(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    return None


def noop_registry() -> HandlerRegistry:
    registry = HandlerRegistry.default()
    for kind in JobKind:
        registry = registry.override(kind, noop, llm_bound=False)
    return registry
