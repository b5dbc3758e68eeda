"""Migration 0007: the ledger's dry runs take their own outcome, and back on a downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from memtasks.storage.engine import EngineOptions, get_engine
from memtasks.storage.memory_tables import consolidation_runs as runs
from memtasks.storage.migrate import alembic_config, current_revision, upgrade

pytestmark = pytest.mark.integration


def _row(dry_run: bool, outcome: str) -> dict[str, object]:
    return {"started_at_ms": 1, "trigger": "t", "dry_run": dry_run, "outcome": outcome, "gates_json": "{}"}


def _outcomes(engine: Engine) -> list[tuple[bool, str]]:
    with engine.connect() as conn:
        return [(bool(r.dry_run), r.outcome) for r in conn.execute(select(runs).order_by(runs.c.id))]


def _insert(engine: Engine, dry_run: bool, outcome: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(runs).values(_row(dry_run, outcome)))


def test_stored_dry_runs_take_their_outcome_and_get_it_back_on_a_downgrade(db_url: str) -> None:
    engine = get_engine(db_url, EngineOptions(auto_migrate=False))
    upgrade(engine, "0006")
    for dry_run, outcome in ((True, "ran"), (False, "ran"), (False, "skipped"), (False, "failed")):
        _insert(engine, dry_run, outcome)
    with pytest.raises(IntegrityError):
        _insert(engine, True, "dry_run")

    upgrade(engine, "0007")
    assert current_revision(engine) == "0007"
    assert _outcomes(engine) == [(True, "dry_run"), (False, "ran"), (False, "skipped"), (False, "failed")]
    _insert(engine, True, "dry_run")
    with pytest.raises(IntegrityError):
        _insert(engine, False, "bogus")  # the constraint still stands, with the new outcome in it

    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
    assert current_revision(engine) == "0006"
    assert _outcomes(engine) == [
        (True, "ran"),
        (False, "ran"),
        (False, "skipped"),
        (False, "failed"),
        (True, "ran"),
    ]
    with pytest.raises(IntegrityError):
        _insert(engine, True, "dry_run")
