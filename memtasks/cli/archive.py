"""``memtasks archive list|show|restore``: what the prunes took, and bringing it back."""

from __future__ import annotations

import getpass
import socket

import typer
from rich.table import Table as RichTable

from memtasks.cli.common import JSON_HELP, emit_json, fail, out, refuse_together, state, usage, when
from memtasks.domain.errors import ValidationError
from memtasks.services.archive import Archive, RestoreTarget

app = typer.Typer(
    help="The archive of pruned messages, outcomes and finished jobs: list, show, restore.",
    no_args_is_help=True,
)


def operator() -> str:
    """Who runs this command: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Consolidation runs with rows in the archive, newest first, and each archive table's size
    (read-only)."""
    overview = Archive(state(ctx).reader).overview(limit)
    if as_json:
        emit_json(overview.as_dict())
        return
    out.print(
        f"archive: kept {overview.grace_days:g} days; "
        + ", ".join(f"{name} {count}" for name, count in overview.counts.items()),
        markup=False,
    )
    if not overview.runs:
        out.print("no consolidation run has rows in the archive", markup=False)
        return
    table = RichTable("run", "archived at", "messages", "outcomes")
    for run in overview.runs:
        table.add_row(str(run.run_id), when(run.archived_at_ms), str(run.messages), str(run.outcomes))
    out.print(table)


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: int = typer.Argument(..., min=1, help="the run's id in the consolidation ledger"),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=100_000),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The archived messages and outcomes of one consolidation run (read-only)."""
    rows = Archive(state(ctx).reader).run_rows(run_id, limit)
    if as_json:
        emit_json({"run_id": run_id, **rows})
        return
    if not any(rows.values()):
        fail(f"consolidation run {run_id} has no rows in the archive (restored, purged, or none pruned)")
    for name, items in rows.items():
        out.print(f"{name}: {len(items)}{' (first ' + str(limit) + ')' if len(items) == limit else ''}")
        for row in items:
            text = row.get("content", row.get("lesson", ""))
            who = row.get("conversation_id", row.get("sender_id", ""))
            out.print(f"  {row['id']:>10}  {who}  {str(text)[:80]!r}", markup=False)


@app.command("restore")
def restore(
    ctx: typer.Context,
    run: int | None = typer.Option(None, "--run", min=1, help="every row a consolidation run archived"),
    conversation: str | None = typer.Option(None, "--conversation", help="a conversation's messages"),
    job: str | None = typer.Option(None, "--job", help="one finished job (job:… or dj_…)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Bring archived rows back, exactly as they were. A row back already is not duplicated,
    a row whose id another row holds now is not overwritten, and a message whose conversation
    was deleted is not resurrected: they stay in the archive, counted."""
    refuse_together(
        **{"--run": run is not None, "--conversation": conversation is not None, "--job": job is not None}
    )
    chosen = [
        (scope, key) for scope, key in (("run", run), ("conversation", conversation), ("job", job)) if key
    ]
    if not chosen:
        usage(
            "say what to restore: --run ID, --conversation ID or --job ID",
            "see `memtasks archive restore --help`",
        )
    try:
        target = RestoreTarget.of(*chosen[0])
    except ValidationError as exc:
        usage(str(exc))
    done = Archive(state(ctx).runtime).restore(target, actor=operator(), via="cli")
    if as_json:
        emit_json({"target": {target.scope.value: target.key}, **done.as_dict()})
        return
    if not done.found:
        out.print(
            f"nothing of {target.describe()} is in the archive (restored already, purged, or never pruned)",
            markup=False,
        )
        return
    restored = ", ".join(f"{count} {name}" for name, count in done.restored.items())
    out.print(f"restored {restored} ({target.describe()})", markup=False)
    if done.already_back:
        out.print(f"  {done.already_back} were back already (left as they are)", markup=False)
    if done.kept_conversation_gone:
        out.print(f"  {done.kept_conversation_gone} kept: their conversation was deleted", markup=False)
    if done.kept_id_taken:
        out.print(f"  {done.kept_id_taken} kept: another row holds their id now", markup=False)
