"""The shipped migrations build exactly the declared tables, on both backends."""

from __future__ import annotations

import multiprocessing

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.migrate import current_revision, head_revision, upgrade
from memtasks.storage.schema import metadata

pytestmark = pytest.mark.integration


def test_migrations_match_the_declared_tables(db_url: str) -> None:
    engine = get_engine(db_url, EngineOptions(auto_migrate=False))
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    names = set(inspect(engine).get_table_names())
    assert {"mem_tree_jobs", "decay_jobs", "alembic_version"} <= names


def test_upgrade_is_idempotent(db_url: str) -> None:
    engine = get_engine(db_url)
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def _open(url: str) -> str | None:
    return current_revision(get_engine(url))


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        revisions = pool.map(_open, [db_url] * 3)
    assert revisions == [head_revision()] * 3
