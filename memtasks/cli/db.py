"""``memtasks db upgrade|current``: the Alembic migrations shipped in the package."""

from __future__ import annotations

import typer

from memtasks.cli.common import fail, out, state
from memtasks.services.schema import schema_state, upgrade_schema

app = typer.Typer(help="Database schema: apply or show the migrations.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply every migration up to the newest (safe to run from several processes)."""
    before, after = upgrade_schema(state(ctx).settings)
    change = "already at" if before.current == after.current else f"{before.current or 'empty'} →"
    out.print(f"{after.where}: {change} revision {after.current} (head)", markup=False)


@app.command("current")
def db_current(
    ctx: typer.Context,
    check: bool = typer.Option(
        False, "--check", help="exit 1 when the database is not at the newest revision"
    ),
) -> None:
    """Show the database's revision and the newest one this version ships."""
    now = schema_state(state(ctx).settings)
    out.print(
        f"{now.where}: revision {now.current or 'none (empty database)'}, head {now.head}", markup=False
    )
    if check and now.current != now.head:
        fail(
            f"the database is at {now.current or 'no revision'}, not at {now.head}",
            "run `memtasks db upgrade`",
        )
