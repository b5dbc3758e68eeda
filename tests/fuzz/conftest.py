"""Fixtures of the fuzz tier: databases that live for a whole module.

Hypothesis runs hundreds of examples per test; a database per example would be slow and a
function-scoped fixture is shared by every example anyway. So each module gets one SQLite
file and one PostgreSQL schema, and every example checks its own effect (rows before and
after, a bystander row unchanged) instead of relying on an empty database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from memtasks.storage.engine import get_engine, reset_registry
from tests.conftest import BACKENDS, POSTGRES_URL, postgres_schema_url, require_postgres


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of this module alone, once per backend."""
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("fuzz-sqlite")
        url = f"sqlite:///{folder}/memtasks.sqlite3"
        get_engine(url)  # applies the migrations
        yield url
        return
    require_postgres()
    schema = f"fuzz_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = postgres_schema_url(schema)
        get_engine(url)
        yield url
    finally:
        reset_registry()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
