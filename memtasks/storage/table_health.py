"""How the job tables wear on PostgreSQL: their size on disk, dead row versions, the last vacuum,
and whether the server vacuums at all; and how large the archive tables are (what the prunes
took, kept for the grace period).

Every job writes its row three times and the prune deletes it, so on PostgreSQL the job tables
fill with dead row versions that only a vacuum makes reusable; with autovacuum off they grow
with every job whatever the prune keeps. ``memtasks status`` shows this and warns. SQLite
reuses freed pages itself: nothing to report there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text

from memtasks.storage.rows import reading

JOB_TABLES = ("mem_tree_jobs", "decay_jobs")
ARCHIVE_TABLES = ("archived_messages", "archived_outcomes", "archived_mem_tree_jobs", "archived_decay_jobs")
REPORTED = JOB_TABLES + ARCHIVE_TABLES


@dataclass(frozen=True, slots=True)
class TableHealth:
    table: str
    bytes: int
    """Heap, indexes and TOAST."""
    live_rows: int
    dead_rows: int
    last_vacuum_ms: int | None
    """The newest vacuum, manual or automatic; None if never since the statistics were reset."""


@dataclass(frozen=True, slots=True)
class StorageHealth:
    autovacuum: bool
    tables: tuple[TableHealth, ...]

    @property
    def warning(self) -> str | None:
        if self.autovacuum:
            return None
        return (
            "autovacuum is off on this PostgreSQL server: the job tables grow with every job until"
            " a VACUUM runs — turn autovacuum on, or VACUUM mem_tree_jobs and decay_jobs on a schedule"
        )


STATS = text(
    "SELECT s.relname, pg_total_relation_size(s.relid), s.n_live_tup, s.n_dead_tup,"
    " CAST(EXTRACT(EPOCH FROM GREATEST(s.last_vacuum, s.last_autovacuum)) * 1000 AS BIGINT)"
    " FROM pg_stat_user_tables s WHERE s.relid = to_regclass(:table)"
)


def storage_health(engine: Engine) -> StorageHealth | None:
    """None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    with reading(engine) as conn:
        autovacuum = str(conn.execute(text("SHOW autovacuum")).scalar_one()).lower() == "on"
        tables = []
        for name in REPORTED:
            row = conn.execute(STATS, {"table": name}).one_or_none()
            if row is None:
                continue
            tables.append(
                TableHealth(
                    table=name,
                    bytes=int(row[1]),
                    live_rows=int(row[2]),
                    dead_rows=int(row[3]),
                    last_vacuum_ms=None if row[4] is None else int(row[4]),
                )
            )
    return StorageHealth(autovacuum=autovacuum, tables=tuple(tables))


__all__ = ["ARCHIVE_TABLES", "JOB_TABLES", "REPORTED", "StorageHealth", "TableHealth", "storage_health"]
