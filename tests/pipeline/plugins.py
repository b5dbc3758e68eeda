"""Plug-ins of the pipeline tests: a handler registry (``MEMTASKS_HANDLERS``) and a summary
backend (``MEMTASKS_SUMMARY_BACKEND``).

``reembed_backfill`` is replaced by a probe whose payload says how to behave: fail its
first ``fail_times`` attempts, sleep ``sleep_s`` on its first ``sleep_attempts`` attempts
(or on every attempt with ``sleep_always``), report its "model call" cost ``cost`` (LLM
budgets). It counts its runs and the most probes that
ever ran at once in Redis (``MEMTASKS_LOCK_REDIS_URL``), so a test sees every execution,
including those whose writes rolled back.

:func:`flaky_backend` summarises like a model server that times out on its first two calls: it
counts its calls in the same Redis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from memtasks.domain.budgets import report_cost
from memtasks.domain.compression import Source
from memtasks.domain.jobs import JobKind
from memtasks.services.mem_tree import Defer, HandlerContext, HandlerRegistry

_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["MEMTASKS_LOCK_REDIS_URL"])
    return _client


def probe(ctx: HandlerContext, payload: Mapping[str, Any]) -> Defer | None:
    r = client()
    name = payload["probe"]
    r.incr(f"probe:{name}:runs")
    r.eval(_ENTER, 2, "probe:running", "probe:max-running")
    try:
        attempt = ctx.job.attempts
        if payload.get("sleep_always") or attempt <= payload.get("sleep_attempts", 0):
            time.sleep(float(payload.get("sleep_s", 0)))
        if attempt <= payload.get("fail_times", 0):
            raise RuntimeError(f"probe {name} fails attempt {attempt}")
    finally:
        r.decr("probe:running")
    if "cost" in payload:  # what "its model call" cost, reported as a model plug-in reports it
        report_cost(float(payload["cost"]))
    r.incr(f"probe:{name}:ok")
    return None


def build_registry() -> HandlerRegistry:
    return HandlerRegistry.default().override(JobKind.REEMBED_BACKFILL, probe)


FLAKY_FAILS = 2


class FlakyBackend:
    def summarise(self, sources: Sequence[Source], model: str, prompt_template_hash: str) -> str:
        calls = int(client().incr("flaky:calls"))
        if calls <= FLAKY_FAILS:
            raise TimeoutError(f"model server timed out (call {calls})")
        return f"summary by {model} of " + ", ".join(s.id for s in sources)


def flaky_backend() -> FlakyBackend:
    return FlakyBackend()
