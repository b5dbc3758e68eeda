"""The handler of the network scenarios (``MEMTASKS_HANDLERS=bench.chaos.network_handlers:build_registry``).

Every ``seal`` job takes its tree's level-0 buffer row lock in its own transaction (as the
real seal and append handlers do), holds it ``hold_s`` seconds on its first attempt while it
keeps working in that transaction (a statement every half second: a busy handler, not an
idle one — the host is cut off while it holds the lock), then writes one ``chaos_effects``
row in the same transaction — so the effect commits with the settle or not at all, and a job that
ran twice on two hosts shows two effects only if fencing failed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text

from bench.chaos.handlers import write_effect
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry


def hold_then_write(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    job = ctx.job
    ctx.store.lock_buffer(ctx.conn, str(payload["tree_id"]), 0)
    hold_s = float(payload.get("hold_s", 0))
    if hold_s and job.attempts <= int(payload.get("hold_attempts", 1)):
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:  # a cut-off host learns nothing until it heals
            ctx.conn.execute(text("SELECT 1"))
            time.sleep(0.5)
    write_effect(ctx)
    return None


def build_registry() -> HandlerRegistry:
    return HandlerRegistry.default().override(JobKind.SEAL, hold_then_write, llm_bound=False)
