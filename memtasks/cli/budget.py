"""``memtasks budget``: LLM spend per scope and period against the budgets (read-only)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table as RichTable

from memtasks.cli.common import JSON_HELP, emit_json, out, state, when
from memtasks.domain.budgets import FLEET_SCOPE, LANE_PREFIX
from memtasks.services.budgets import Budgets, budget_config
from memtasks.services.job_view import iso


def _limit(scope: str, fleet: float | None, per_agent: float | None) -> float | None:
    if scope == FLEET_SCOPE:
        return fleet
    return per_agent if scope.startswith(LANE_PREFIX) else None


def budget(
    ctx: typer.Context,
    periods: int = typer.Option(1, "--periods", "-p", min=1, max=1_000, help="how many periods back"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """LLM spend of each scope (the fleet, each agent) per period, against its budget; what
    the admitted jobs in flight reserve; the estimate of the next job (read-only)."""
    s = state(ctx)
    config = budget_config(s.settings)
    reader = s.reader
    now = reader.jobs.clock()
    start = config.period_start(now) - (periods - 1) * config.period_ms
    rows = Budgets(reader.engine, config, reader.jobs.clock, reservation_ms=0).spend(since_ms=start)
    view: dict[str, Any] = {
        "fleet_budget": config.fleet,
        "per_agent_budget": config.per_agent,
        "period_s": config.period_ms / 1000,
        "period_start": iso(config.period_start(now)),
        "next_period_in_s": config.next_period_ms(now) / 1000,
        "scopes": [
            {
                "scope": r.scope,
                "period_start": iso(r.period_start_ms),
                "period_start_ms": r.period_start_ms,
                "spent": r.spent,
                "limit": _limit(r.scope, config.fleet, config.per_agent),
                "jobs": r.jobs,
                "estimate": r.max_job_cost,
                "reserved": r.reserved,
                "in_flight": r.in_flight,
            }
            for r in rows
        ],
    }
    if as_json:
        emit_json(view)
        return
    if not config.active:
        out.print("no LLM budget is set (MEMTASKS_LLM_BUDGET, MEMTASKS_LLM_BUDGET_PER_AGENT)", markup=False)
    else:
        fleet = "—" if config.fleet is None else f"{config.fleet:g}"
        per_agent = "—" if config.per_agent is None else f"{config.per_agent:g}"
        began, next_s = when(config.period_start(now)), config.next_period_ms(now) / 1000
        out.print(
            f"budgets per {config.period_ms / 1000:g} s: fleet {fleet}, per agent {per_agent};"
            f" this period began {began}, the next in {next_s:.0f} s",
            markup=False,
        )
    if not rows:
        out.print("no LLM spend recorded in these periods", markup=False)
        return
    table = RichTable("scope", "period", "spent", "limit", "jobs", "estimate", "reserved", "in flight")
    for r in rows:
        limit = _limit(r.scope, config.fleet, config.per_agent)
        table.add_row(
            r.scope,
            when(r.period_start_ms),
            f"{r.spent:g}",
            "—" if limit is None else f"{limit:g}",
            str(r.jobs),
            f"{r.max_job_cost:g}",
            f"{r.reserved:g}",
            str(r.in_flight),
        )
    out.print(table)
