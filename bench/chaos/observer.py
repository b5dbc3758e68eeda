"""What the run watches while it goes, from a thread with its own database connection.

- **Expired leases**, every 100 ms: rows still ``running`` whose ``locked_until_ms`` has
  passed, with that expiry (heartbeats included). The checker pairs each with the claim
  that took the job over.
- **Finished rows**, every few seconds: the first state seen of every terminal row —
  status, attempts, finish time, failure reason, last error and its effect rows. A later
  snapshot that differs is recorded as a change: a finished row must never change. The
  same poll counts the jobs per status for the progress line.

Database faults make polls fail; they are counted and the next poll tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, text

log = logging.getLogger("bench.chaos.observer")

EXPIRED = text(
    "SELECT id, lease_token, locked_until_ms FROM mem_tree_jobs "
    "WHERE status = 'running' AND locked_until_ms < :now"
)
TERMINAL = text(
    "SELECT j.id, j.status, j.attempts, j.completed_at_ms, j.failure_reason, j.last_error, "
    "coalesce(e.n, 0) AS effects, e.token AS effect_token "
    "FROM mem_tree_jobs j LEFT JOIN ("
    "  SELECT job_id, count(*) AS n, min(lease_token) AS token FROM chaos_effects GROUP BY job_id"
    ") e ON e.job_id = j.id "
    "WHERE j.status IN ('done', 'failed', 'cancelled')"
)
BY_STATUS = text("SELECT status, count(*) FROM mem_tree_jobs GROUP BY status")


@dataclass
class ExpiredLease:
    job_id: str
    token: str
    expiry_ms: int
    first_seen_ms: int


@dataclass(frozen=True, slots=True)
class TerminalChange:
    job_id: str
    before: tuple[Any, ...]
    after: tuple[Any, ...]


@dataclass
class Observer:
    url: str
    lease_poll_s: float = 0.1
    snapshot_every_s: float = 3.0
    expired: dict[tuple[str, str], ExpiredLease] = field(default_factory=dict)
    terminal: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    changes: list[TerminalChange] = field(default_factory=list)
    snapshots: int = 0
    errors: int = 0
    on_progress: Callable[[dict[str, int]], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _engine: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._engine = create_engine(self.url, pool_pre_ping=True, pool_size=1, max_overflow=0)
        self._thread = threading.Thread(target=self._run, name="chaos-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def close(self) -> None:
        self.stop()
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        next_snapshot = time.monotonic() + self.snapshot_every_s
        while not self._stop.wait(self.lease_poll_s):
            try:
                self.poll_leases()
                if time.monotonic() >= next_snapshot:
                    self.snapshot()
                    next_snapshot = time.monotonic() + self.snapshot_every_s
            except Exception as exc:
                self.errors += 1
                log.debug("observer poll failed: %s", exc)

    def poll_leases(self) -> None:
        assert self._engine is not None
        now = time.time_ns() // 1_000_000
        with self._engine.connect() as conn:
            rows = conn.execute(EXPIRED, {"now": now}).all()
        with self._lock:
            for job_id, token, expiry in rows:
                seen = self.expired.get((job_id, token))
                if seen is None:
                    self.expired[(job_id, token)] = ExpiredLease(job_id, token, int(expiry), now)
                else:
                    seen.expiry_ms = max(seen.expiry_ms, int(expiry))

    def snapshot(self) -> int:
        """Compare every terminal row with its first state seen; returns how many rows."""
        assert self._engine is not None
        with self._engine.connect() as conn:
            rows = conn.execute(TERMINAL).all()
            if self.on_progress is not None:
                self.on_progress({str(k): int(v) for k, v in conn.execute(BY_STATUS)})
        with self._lock:
            for row in rows:
                state = tuple(row[1:])
                first = self.terminal.setdefault(row[0], state)
                if first != state and not any(c.job_id == row[0] and c.after == state for c in self.changes):
                    self.changes.append(TerminalChange(row[0], first, state))
            self.snapshots += 1
        return len(rows)

    def expired_leases(self) -> list[ExpiredLease]:
        with self._lock:
            return list(self.expired.values())
