"""The job tables on PostgreSQL: tuned to be vacuumed as queue tables (migration 0009), and their
wear — size, dead row versions, last vacuum, autovacuum off — reported by ``memtasks status``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from memtasks.domain.jobs import JobKind, NewJob
from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.migrate import alembic_config, current_revision, upgrade
from memtasks.storage.table_health import JOB_TABLES, REPORTED, StorageHealth, storage_health

pytestmark = pytest.mark.integration


def _options(engine: Engine, table: str) -> dict[str, str]:
    with engine.connect() as conn:
        raw = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
        ).scalar_one()
    return dict(str(o).split("=", 1) for o in raw or [])


def test_the_job_tables_vacuum_after_one_percent_dead_and_a_downgrade_restores_the_defaults(
    pg_schema: str,
) -> None:
    engine = get_engine(pg_schema, EngineOptions(auto_migrate=False))
    upgrade(engine, "0009")
    for table in JOB_TABLES:
        assert _options(engine, table) == {
            "autovacuum_vacuum_scale_factor": "0.01",
            "autovacuum_vacuum_threshold": "1000",
            "autovacuum_analyze_scale_factor": "0.02",
        }
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    assert current_revision(engine) == "0008"
    assert all(_options(engine, table) == {} for table in JOB_TABLES)


def test_sqlite_has_nothing_to_report(tmp_path: Path) -> None:
    assert storage_health(get_engine(f"sqlite:///{tmp_path}/m.sqlite3")) is None


def _health_until(engine: Engine, ok: object, what: str) -> StorageHealth:
    """The statistics reach the view within a second or so of a commit."""
    deadline = time.monotonic() + 15
    while True:
        health = storage_health(engine)
        assert health is not None
        if ok(health):  # type: ignore[operator]
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {health}")
        time.sleep(0.2)


def test_dead_rows_and_a_vacuum_are_reported_and_autovacuum_off_warns(pg_schema: str) -> None:
    engine = get_engine(pg_schema)
    jobs = MemTreeJobs(engine)
    ids = jobs.enqueue_many([NewJob(JobKind.EXTRACT_CHUNK, {"chunk_id": f"c{n}"}) for n in range(200)])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM mem_tree_jobs WHERE id = ANY(:ids)"), {"ids": ids[:150]})

    def mem_tree(h: StorageHealth) -> object:
        return next(t for t in h.tables if t.table == "mem_tree_jobs")

    health = _health_until(engine, lambda h: mem_tree(h).dead_rows >= 150, "150 dead rows reported")
    assert [t.table for t in health.tables] == list(REPORTED)
    table = mem_tree(health)
    assert table.live_rows == 50 and table.bytes > 0  # type: ignore[attr-defined]
    vacuuming = create_engine(pg_schema, isolation_level="AUTOCOMMIT")
    try:
        with vacuuming.connect() as conn:
            conn.execute(text("VACUUM mem_tree_jobs"))
    finally:
        vacuuming.dispose()
    health = _health_until(
        engine, lambda h: mem_tree(h).last_vacuum_ms is not None and mem_tree(h).dead_rows == 0, "vacuum seen"
    )

    with engine.connect() as conn:
        autovacuum = str(conn.execute(text("SHOW autovacuum")).scalar_one()) == "on"
    assert health.autovacuum is autovacuum
    assert (health.warning is None) is autovacuum
    if not autovacuum:
        assert "autovacuum is off" in str(health.warning) and "VACUUM mem_tree_jobs" in str(health.warning)
