"""The database schema as an operator sees it: the revision it is at, the newest one, upgrade."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memtasks.config import Settings
from memtasks.services.runtime import engine_options
from memtasks.storage.engine import get_engine, mask_url, parse_url
from memtasks.storage.migrate import current_revision, head_revision, upgrade


@dataclass(frozen=True, slots=True)
class SchemaState:
    where: str
    """The database URL with its password masked."""
    current: str | None
    head: str | None
    exists: bool = True
    """False: a SQLite file that does not exist (nothing was created to find out)."""

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_state(settings: Settings) -> SchemaState:
    """Where the database's schema is, read through a read-only engine: nothing is created
    (a SQLite file that does not exist is a :class:`ConfigurationError`)."""
    url = settings.resolved_database_url
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).is_file():
        return SchemaState(mask_url(url), None, head_revision(), exists=False)
    engine = get_engine(url, engine_options(settings, read_only=True))
    return SchemaState(mask_url(url), current_revision(engine), head_revision())


def upgrade_schema(settings: Settings) -> tuple[SchemaState, SchemaState]:
    """Apply every migration up to the newest (safe from several processes); before and after.

    The one command that creates the database (a SQLite file and its directory included).
    """
    url = settings.resolved_database_url
    engine = get_engine(url, engine_options(settings, migrate=False, create=True))
    head = head_revision()
    before = SchemaState(mask_url(url), current_revision(engine), head)
    upgrade(engine)
    return before, SchemaState(mask_url(url), current_revision(engine), head)


__all__ = ["SchemaState", "schema_state", "upgrade_schema"]
