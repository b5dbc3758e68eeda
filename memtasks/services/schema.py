"""The database schema as an operator sees it: the revision it is at, the newest one, upgrade."""

from __future__ import annotations

from dataclasses import dataclass

from memtasks.config import Settings
from memtasks.storage.engine import EngineOptions, get_engine, mask_url
from memtasks.storage.migrate import current_revision, head_revision, upgrade


@dataclass(frozen=True, slots=True)
class SchemaState:
    where: str
    """The database URL with its password masked."""
    current: str | None
    head: str | None


def schema_state(settings: Settings) -> SchemaState:
    """Where the database's schema is, without migrating it."""
    url = settings.resolved_database_url
    engine = get_engine(url, EngineOptions(auto_migrate=False))
    return SchemaState(mask_url(url), current_revision(engine), head_revision())


def upgrade_schema(settings: Settings) -> tuple[SchemaState, SchemaState]:
    """Apply every migration up to the newest (safe from several processes); before and after."""
    before = schema_state(settings)
    upgrade(get_engine(settings.resolved_database_url, EngineOptions(auto_migrate=False)))
    return before, schema_state(settings)


__all__ = ["SchemaState", "schema_state", "upgrade_schema"]
