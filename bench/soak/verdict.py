"""The soak's bounds, judged on the samples after the warm-up.

- **Memory**: each long-lived process group (a worker with its pool, the beat) ends no higher
  than its warm-up peak plus 10 % — or plus 15 MB where 10 % is less (small processes
  wander by a few MB as the allocator breathes).
- **Connections**: the database's sessions and Redis's clients in the last quarter of the run
  stay within their warm-up peak plus a quarter (at least 3): they wander with the pool
  processes' lazily opened connections and the reconnections after a Redis restart (seen:
  15–19 Redis clients across seven restarts, no trend), where a leak grows with every fault
  and every hour.
- **The job table's size on disk**: in the last quarter of the run it stays within its warm-up
  peak plus half (at least 8 MB): the prune deletes finished rows and vacuums make their space
  reusable, so the table levels off; without vacuums (a server with autovacuum off) it grows
  with every job (seen: 0.05 → 34 MB in 30 minutes with under 3,100 live rows).
- **Finished rows pruned**: done rows stay under what the load makes within one retention
  plus one prune interval, with half as much again as slack.
- **Nothing lost**: after the load stops, no row is left ready, running or failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RSS_GROWTH = 0.10
RSS_FLOOR_MB = 15.0
CONNECTION_SLACK = 3
CONNECTION_GROWTH = 0.25
TABLE_GROWTH = 0.5
TABLE_FLOOR_MB = 8.0


def judge(
    samples: Sequence[dict[str, Any]],
    *,
    warmup_s: float,
    done_bound: int,
    leftover: dict[str, int],
) -> dict[str, Any]:
    warm = [s for s in samples if s["at_s"] <= warmup_s]
    after = [s for s in samples if s["at_s"] > warmup_s]
    violations: list[str] = []
    if not warm or not after:
        return {"ok": False, "violations": ["too few samples to judge"]}
    memory: dict[str, dict[str, float]] = {}
    for name in warm[-1]["rss_mb"]:
        peak = max(s["rss_mb"].get(name, 0.0) for s in warm)
        bound = max(peak * (1 + RSS_GROWTH), peak + RSS_FLOOR_MB)
        # The end of the run is what grew: the last quarter of the samples after the warm-up.
        tail = after[-max(1, len(after) // 4) :]
        end = max(s["rss_mb"].get(name, 0.0) for s in tail)
        memory[name] = {
            "warmup_peak_mb": round(peak, 1),
            "end_mb": round(end, 1),
            "bound_mb": round(bound, 1),
        }
        if end > bound:
            violations.append(f"{name} grew from {peak:.1f} MB to {end:.1f} MB (bound {bound:.1f} MB)")
    flat: dict[str, dict[str, int]] = {}
    for key in ("pg_connections", "redis_clients"):
        peak = max(int(s[key]) for s in warm)
        tail = after[-max(1, len(after) // 4) :]
        top = max(int(s[key]) for s in tail)
        bound = peak + max(CONNECTION_SLACK, int(peak * CONNECTION_GROWTH))
        flat[key] = {"warmup_peak": peak, "end_peak": top, "bound": bound}
        if top > bound:
            violations.append(f"{key} grew from {peak} to {top} (bound {bound})")
    table_peak = max(float(s["table_mb"]) for s in warm)
    table_end = max(float(s["table_mb"]) for s in after[-max(1, len(after) // 4) :])
    table_bound = max(table_peak * (1 + TABLE_GROWTH), table_peak + TABLE_FLOOR_MB)
    table = {
        "warmup_peak_mb": round(table_peak, 2),
        "end_mb": round(table_end, 2),
        "bound_mb": round(table_bound, 2),
    }
    if table_end > table_bound:
        violations.append(
            f"the job table grew from {table_peak:.1f} MB to {table_end:.1f} MB on disk"
            f" (bound {table_bound:.1f} MB)"
        )
    done_peak = max(int(s["rows"].get("done", 0)) for s in after)
    if done_peak > done_bound:
        violations.append(f"done rows reached {done_peak}, over {done_bound}: finished rows are not pruned")
    archived_peak = max(int(s.get("archived_rows", 0)) for s in after)
    if archived_peak > done_bound:
        violations.append(
            f"archived rows reached {archived_peak}, over {done_bound}: the archive is not purged"
        )
    lost = {k: v for k, v in leftover.items() if k != "done" and v}
    if lost:
        violations.append(f"rows left unfinished after the load: {lost}")
    return {
        "ok": not violations,
        "violations": violations,
        "memory": memory,
        "connections": flat,
        "job_table": table,
        "done_rows_peak": done_peak,
        "done_rows_bound": done_bound,
        "archived_rows_peak": archived_peak,
        "leftover": leftover,
    }
