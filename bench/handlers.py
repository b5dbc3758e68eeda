"""Registries for the benchmarks (``MEMTASKS_HANDLERS=bench.handlers:<name>``).

``noop_registry``: every handler does nothing — the pipeline is measured, not a handler.
``write_registry``: every handler inserts one row into ``bench_effects`` through ``ctx.conn``,
inside the job's transaction (committed with its settle, or not at all): the cost of a
durable effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text

from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry

INSERT = text("INSERT INTO bench_effects (job_id) VALUES (:id)")


def noop(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    return None


def write(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    ctx.conn.execute(INSERT, {"id": ctx.job.id})
    return None


def _every_kind(handler: Any) -> HandlerRegistry:
    registry = HandlerRegistry.default()
    for kind in JobKind:
        registry = registry.override(kind, handler, llm_bound=False)
    return registry


def noop_registry() -> HandlerRegistry:
    return _every_kind(noop)


def write_registry() -> HandlerRegistry:
    return _every_kind(write)
