"""Engine registry, SQLite pragmas, URL errors, quarantine and the init circuit breaker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from memtasks.domain.errors import CircuitOpen, ConfigurationError, DatabaseUnavailable, StorageError
from memtasks.storage.breaker import BreakerState
from memtasks.storage.engine import (
    EngineOptions,
    breaker_for,
    get_engine,
    mask_url,
    parse_url,
    quarantine_sqlite,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

UNREACHABLE_PG = "postgresql://memtasks:s3cret-pw@127.0.0.1:1/test"


def test_one_engine_per_url(db_url: str) -> None:
    assert get_engine(db_url) is get_engine(db_url)


def test_sqlite_pragmas_are_set_and_verified(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/p.sqlite3")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 15_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL under WAL


def test_sqlite_without_wal_runs_synchronous_full(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path}/d.sqlite3", EngineOptions(journal_mode="delete"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "delete"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_refused_journal_mode_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "held.sqlite3"
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA journal_mode=wal")
    holder.execute("CREATE TABLE x (a)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM x").fetchall()
    try:
        with pytest.raises(StorageError, match="journal_mode"):
            get_engine(f"sqlite:///{path}", EngineOptions(journal_mode="delete", busy_timeout_s=0.2))
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "invalid database URL"),
        ("mysql://root@127.0.0.1/test", "unsupported database 'mysql'"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
    ],
)
def test_wrong_database_url_says_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as info:
        get_engine(url)
    assert "MEMTASKS_DATABASE_URL" in str(info.value) or "SQLite file" in str(info.value)


def test_postgres_scheme_aliases_use_psycopg() -> None:
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"


def test_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        get_engine(UNREACHABLE_PG)
    message = str(info.value)
    assert message.startswith("cannot use the database at postgresql+psycopg://memtasks:***@127.0.0.1:1/test")
    assert "s3cret-pw" not in message
    assert mask_url(UNREACHABLE_PG) == "postgresql://memtasks:***@127.0.0.1:1/test"


def test_three_failed_inits_open_the_breaker_which_closes_after_cooldown(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the data directory should be")
    url = f"sqlite:///{blocker}/sub/db.sqlite3"
    options = EngineOptions(breaker_cooldown_s=0.5)
    breaker = breaker_for(url, options)
    for _ in range(3):
        with pytest.raises(ConfigurationError, match="cannot create the directory"):
            get_engine(url, options)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match=r"circuit breaker open for sqlite:///.*3 consecutive"):
        get_engine(url, options)
    blocker.unlink()
    wait_for(lambda: breaker.state is BreakerState.HALF_OPEN)
    engine = get_engine(url, options)
    assert breaker.state is BreakerState.CLOSED
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_failure_in_half_open_reopens_the_breaker() -> None:
    options = EngineOptions(breaker_cooldown_s=0.3, connect_timeout_s=2)
    breaker = breaker_for(UNREACHABLE_PG, options)
    for _ in range(3):
        with pytest.raises(DatabaseUnavailable):
            get_engine(UNREACHABLE_PG, options)
    wait_for(lambda: breaker.state is BreakerState.HALF_OPEN)
    with pytest.raises(DatabaseUnavailable):
        get_engine(UNREACHABLE_PG, options)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        get_engine(UNREACHABLE_PG, options)


def test_corrupt_sqlite_is_quarantined_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite3"
    garbage = b"this is not a database at all" * 200
    path.write_bytes(garbage)
    engine = get_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mem_tree_jobs")).scalar() == 0
    moved = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(moved) == 1
    assert moved[0].read_bytes() == garbage


def test_quarantine_moves_the_wal_and_shm_alongside(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    files = {"": b"main", "-wal": b"committed pages", "-shm": b"index"}
    for suffix, content in files.items():
        Path(f"{path}{suffix}").write_bytes(content)
    target = quarantine_sqlite(path)
    for suffix, content in files.items():
        assert not Path(f"{path}{suffix}").exists()
        assert Path(f"{target}{suffix}").read_bytes() == content


def test_a_claim_on_a_connection_pinged_after_idling_runs(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle ping left its connection inside a transaction, so a claim by id (one
    autocommit statement) failed with "can't change 'autocommit' now" after any quiet spell."""
    from memtasks.domain.tree import seal_job
    from memtasks.storage import engine as engine_module
    from memtasks.storage.mem_tree_queue import MemTreeJobs

    jobs = MemTreeJobs(get_engine(pg_schema))
    job_id = jobs.enqueue(seal_job("idle", 0))
    assert job_id is not None
    monkeypatch.setattr(engine_module, "IDLE_PING_AFTER_S", 0.0)  # every checkout pings first

    claimed = jobs.claim(job_id)

    assert claimed is not None and claimed.status.value == "running"
    assert jobs.heartbeat(claimed.lease)
