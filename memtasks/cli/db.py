"""``memtasks db upgrade|current``: the Alembic migrations shipped in the package."""

from __future__ import annotations

import typer

from memtasks.cli.common import fail, out, state
from memtasks.storage.engine import EngineOptions, get_engine, mask_url
from memtasks.storage.migrate import current_revision, head_revision, upgrade

app = typer.Typer(help="Database schema: apply or show the migrations.", no_args_is_help=True)


def _engine(ctx: typer.Context):  # type: ignore[no-untyped-def]
    settings = state(ctx).settings
    return get_engine(settings.resolved_database_url, EngineOptions(auto_migrate=False)), mask_url(
        settings.resolved_database_url
    )


@app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration up to the newest (safe to run from several processes)."""
    engine, where = _engine(ctx)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    change = "already at" if before == after else f"{before or 'empty'} →"
    out.print(f"{where}: {change} revision {after} (head)", markup=False)


@app.command("current")
def db_current(
    ctx: typer.Context,
    check: bool = typer.Option(
        False, "--check", help="exit 1 when the database is not at the newest revision"
    ),
) -> None:
    """Show the database's revision and the newest one this version ships."""
    engine, where = _engine(ctx)
    current, head = current_revision(engine), head_revision()
    out.print(f"{where}: revision {current or 'none (empty database)'}, head {head}", markup=False)
    if check and current != head:
        fail(f"the database is at {current or 'no revision'}, not at {head}", "run `memtasks db upgrade`")
