"""``memtasks db upgrade|current``: the Alembic migrations shipped in the package."""

from __future__ import annotations

import typer

from memtasks.cli.common import JSON_HELP, emit_json, fail, out, state
from memtasks.services.schema import schema_state, upgrade_schema

app = typer.Typer(help="Database schema: apply or show the migrations.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Apply every migration up to the newest (safe to run from several processes).

    The one command that creates the database: the SQLite file and its directory, or the
    tables of an empty PostgreSQL database.
    """
    before, after = upgrade_schema(state(ctx).settings)
    if as_json:
        emit_json(
            {
                "database": after.where,
                "before": before.current,
                "current": after.current,
                "head": after.head,
                "changed": before.current != after.current,
            }
        )
        return
    change = "already at" if before.current == after.current else f"{before.current or 'empty'} →"
    out.print(f"{after.where}: {change} revision {after.current} (head)", markup=False)


@app.command("current")
def db_current(
    ctx: typer.Context,
    check: bool = typer.Option(
        False, "--check", help="exit 1 when the database is not at the newest revision"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show the database's revision and the newest one this version ships (read-only: a
    database that does not exist is reported, not created)."""
    now = schema_state(state(ctx).settings)
    if as_json:
        emit_json(
            {
                "database": now.where,
                "exists": now.exists,
                "current": now.current,
                "head": now.head,
                "at_head": now.at_head,
            }
        )
    else:
        where = "none (no database file)" if not now.exists else now.current or "none (empty database)"
        out.print(f"{now.where}: revision {where}, head {now.head}", markup=False)
    if check and not now.at_head:
        fail(
            f"the database is at {now.current or 'no revision'}, not at {now.head}",
            "run `memtasks db upgrade`",
        )
