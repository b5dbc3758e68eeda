"""Apply the Alembic migrations shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed 64-bit number: the advisory lock that serialises PostgreSQL migrations.
PG_MIGRATION_LOCK = 0x6D656D7461736B73
MIGRATION_LOCK_TIMEOUT = "5min"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` in one transaction, one process at a time.

    SQLite serialises through its write lock (BEGIN IMMEDIATE); PostgreSQL through a
    transaction-scoped advisory lock. A second process finds the work done.
    """
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # A migration may wait for another process's migration and for the locks of
            # running transactions longer than a worker's statement would (lock_timeout).
            conn.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": MIGRATION_LOCK_TIMEOUT})
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        if _current(conn) == head_revision():
            return
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def is_known_revision(revision: str) -> bool:
    """True when ``revision`` is one of the migrations shipped here (False: a newer memtasks's)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return _current(conn)
