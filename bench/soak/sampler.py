"""What the soak samples: memory of the fleet's processes, database connections, Redis
clients and the job table, every few seconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, text

from bench.chaos.procs import children_of


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def group_rss_mb(pid: int) -> float:
    """A process and its children (a worker: its main process and its pool)."""
    return rss_mb(pid) + sum(rss_mb(child) for child in children_of(pid))


@dataclass
class Sampler:
    engine: Engine
    database: str
    redis_client: redis.Redis
    processes: dict[str, int]
    """name → pid of each long-lived process group (workers, beat)."""

    def sample(self, at_s: float) -> dict[str, Any]:
        with self.engine.connect() as conn:
            connections = int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
                    ),
                    {"d": self.database},
                ).scalar_one()
            )
            by_status = {
                str(r[0]): int(r[1])
                for r in conn.execute(text("SELECT status, count(*) FROM mem_tree_jobs GROUP BY status"))
            }
            size, dead = conn.execute(
                text(
                    "SELECT pg_total_relation_size('mem_tree_jobs'), n_dead_tup FROM pg_stat_user_tables"
                    " WHERE relid = to_regclass('mem_tree_jobs')"
                )
            ).one()
            table_mb = float(size) / 2**20
            archived = int(conn.execute(text("SELECT count(*) FROM archived_mem_tree_jobs")).scalar_one())
        info: dict[str, Any] = self.redis_client.info("clients")  # type: ignore[assignment]
        clients = int(info["connected_clients"])
        return {
            "at_s": round(at_s, 1),
            "rss_mb": {name: round(group_rss_mb(pid), 1) for name, pid in self.processes.items()},
            "pg_connections": connections,
            "redis_clients": clients,
            "rows": by_status,
            "table_mb": round(table_mb, 2),
            "dead_rows": int(dead),
            "archived_rows": archived,
        }
