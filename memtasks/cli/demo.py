"""``memtasks demo``: the main job (``make run``; ``make fleet`` keeps the fleet up)."""

from __future__ import annotations

import typer

from memtasks.cli.common import out
from memtasks.cli.fleet import from_settings


def demo(
    quick: bool = typer.Option(False, "--quick", help="a smaller workload"),
    keep: bool = typer.Option(
        False, "--keep", help="keep the fleet running with Flower and the web console until Ctrl-C"
    ),
    flower_port: int = typer.Option(
        None,
        "--flower-port",
        callback=from_settings("flower_port"),
        help="default: MEMTASKS_FLOWER_PORT, else 5555",
    ),
    web_port: int = typer.Option(
        None,
        "--web-port",
        callback=from_settings("web_port"),
        help="default: MEMTASKS_WEB_PORT, else 9810",
    ),
    timeout_s: float = typer.Option(300.0, "--timeout", min=10, help="seconds to wait for every job"),
) -> None:
    """Start a local fleet, drive a synthetic agent workload, report, stop everything started."""
    # Imported here: it imports the Celery app, which reads the settings; a bad setting must be
    # the command's one-line error, not a traceback at import.
    from memtasks.demo.run import DemoOptions, run_demo

    code = run_demo(
        DemoOptions(quick=quick, keep=keep, flower_port=flower_port, web_port=web_port, timeout_s=timeout_s),
        out,
    )
    raise typer.Exit(code)
