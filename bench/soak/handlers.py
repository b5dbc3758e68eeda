"""The soak fleet's handlers (``MEMTASKS_HANDLERS=bench.soak.handlers:build_registry``): every
memory-tree kind does a few milliseconds of work and writes nothing, so the tables hold only
the queue's own rows and any growth the soak sees is the fleet's."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry


def work(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    time.sleep(float(payload.get("work_ms", 2)) / 1000)
    return None


def build_registry() -> HandlerRegistry:
    registry = HandlerRegistry.default()
    for kind in JobKind:
        registry = registry.override(kind, work, llm_bound=False)
    return registry
