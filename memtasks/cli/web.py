"""``memtasks web``: the console over the durable tables (``memtasks.web``), served by uvicorn.

Refuses to listen beyond loopback without authentication (``MEMTASKS_WEB_BASIC_AUTH``) unless
``--allow-unauthenticated``; ``--read-only`` (``MEMTASKS_WEB_READ_ONLY``) opens the database
read-only and offers no action.
"""

from __future__ import annotations

import typer

from memtasks.cli.common import err, fail, out, state
from memtasks.cli.fleet import checked_by, from_settings
from memtasks.config import check_listen_address

WEB_HINT = "pip install 'memtasks[web]'"


def web(
    ctx: typer.Context,
    port: int = typer.Option(
        None, "--port", callback=from_settings("web_port"), help="default: MEMTASKS_WEB_PORT, else 9810"
    ),
    address: str = typer.Option(
        None,
        "--address",
        callback=checked_by(check_listen_address, "web_address"),
        help="default: MEMTASKS_WEB_ADDRESS, else 127.0.0.1",
    ),
    read_only: bool = typer.Option(
        None,
        "--read-only",
        callback=from_settings("web_read_only"),
        help="show, never change (MEMTASKS_WEB_READ_ONLY)",
    ),
    allow_unauthenticated: bool = typer.Option(
        None,
        "--allow-unauthenticated",
        callback=from_settings("web_allow_unauthenticated"),
        help="start beyond loopback without MEMTASKS_WEB_BASIC_AUTH",
    ),
) -> None:
    """Serve the web console at http://ADDRESS:PORT: queues, jobs, actions, and a JSON API."""
    try:
        import uvicorn

        from memtasks.web.app import create_console
        from memtasks.web.security import listen_problem, parse_basic_auth
    except ImportError as exc:
        fail(f"the console needs the web extra ({exc.name} is missing)", WEB_HINT)
    s = state(ctx)
    settings = s.settings.model_copy(update={"web_read_only": bool(read_only)})
    secret = settings.web_basic_auth
    users = parse_basic_auth(secret.get_secret_value()) if secret is not None else None
    problem = listen_problem(address, users)
    if problem is not None and not allow_unauthenticated:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(2)
    app = create_console(settings)
    mode = "read-only" if settings.web_read_only else "read-write"
    out.print(f"serving the memtasks console ({mode}) on http://{address}:{port}/", markup=False)
    try:
        uvicorn.run(app, host=address, port=port, log_level="warning", access_log=False)
    except OSError as exc:
        fail(
            f"cannot listen on {address}:{port}: {exc.strerror or exc}", "choose another --port or --address"
        )
