"""The console's HTML pages: queues, jobs, a job, the bulk requeue — server-rendered, with
htmx refreshing the parts that change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from memtasks.domain.errors import JobNotFound, ValidationError
from memtasks.domain.jobs import FailureClass
from memtasks.domain.queues import QUEUES
from memtasks.services.admin import Table, kinds_of, status_words
from memtasks.services.archive import RestoreTarget
from memtasks.services.console import Console
from memtasks.services.job_view import iso
from memtasks.web.filters import BadFilter, JobFilter, read_filter
from memtasks.web.security import CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, cross_site, token_matches

HERE = Path(__file__).parent


def _age(ms: int | None) -> str:
    if ms is None:
        return "—"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=HERE / "templates")
    t.env.filters["age"] = _age
    t.env.filters["iso"] = iso
    t.env.globals["queues"] = QUEUES
    t.env.globals["failure_classes"] = [c.value for c in FailureClass]
    return t


def console_of(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    console = console_of(request)
    base = {
        "actor": request.state.actor,
        "csrf": request.state.csrf,
        "read_only": console.read_only,
        "here": request.url.path,
    }
    response: Response = request.app.state.templates.TemplateResponse(
        request, name, base | context, status_code=status_code
    )
    return response


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def check_action(request: Request) -> dict[str, str]:
    """The form of an action that may go ahead: not read-only, from this site, with the
    anti-forgery token; else :class:`Refused`."""
    if console_of(request).read_only:
        raise Refused(403, "this console is read-only (MEMTASKS_WEB_READ_ONLY)")
    if cross_site(request.headers):
        raise Refused(403, "cross-site request refused")
    form = {k: str(v) for k, v in (await request.form()).items()}
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not token_matches(request.cookies.get(CSRF_COOKIE), given):
        raise Refused(403, "missing or wrong anti-forgery token: reload the page and try again")
    return form


def refusal(request: Request, refused: Refused) -> Response:
    return render(request, "error.html", {"title": "refused", "message": refused.reason}, refused.status)


# ── pages ────────────────────────────────────────────────────────────────────


async def home(_request: Request) -> Response:
    return RedirectResponse("/queues", status_code=302)


async def queues_page(request: Request) -> Response:
    overview = await run_in_threadpool(console_of(request).overview)
    return render(request, "queues.html", {"overview": overview, "title": "Queues"})


async def queues_fragment(request: Request) -> Response:
    overview = await run_in_threadpool(console_of(request).overview)
    return render(request, "_queue_table.html", {"overview": overview})


async def jobs_page(request: Request) -> Response:
    console = console_of(request)
    try:
        which = read_filter(request.query_params)
    except BadFilter as exc:
        return render(request, "error.html", {"title": "bad filter", "message": str(exc)}, 400)
    now = console.admin.now()
    kinds = console.kinds_of_queue(which.queue) if which.queue and which.table is Table.MEM_TREE else None
    jobs, cursor = await run_in_threadpool(
        lambda: console.page(which.table, **which.page_arguments(now, kinds))
    )
    return render(
        request,
        "jobs.html",
        {
            "title": "Decay jobs" if which.table is Table.DECAY else "Jobs",
            "jobs": jobs,
            "filter": which,
            "next_query": None if cursor is None else which.query(before=cursor),
            "first_query": which.query(before=None),
            "kinds": kinds_of(which.table),
            "statuses": status_words(which.table),
            "now_ms": now,
            "requeued": request.query_params.get("requeued"),
        },
    )


async def job_page(request: Request) -> Response:
    console = console_of(request)
    job_id = request.path_params["job_id"]
    found = await run_in_threadpool(console.job, job_id)
    if found is None:
        return render(request, "error.html", {"title": "not found", "message": f"no job {job_id}"}, 404)
    job, actions = found
    attestation = console.awaiting_attestation(job)
    return render(
        request, "job.html", {"title": job_id, "job": job, "actions": actions, "attestation": attestation}
    )


async def maintenance_page(request: Request) -> Response:
    console = console_of(request)
    sweeps = await run_in_threadpool(console.sweeps)
    ledger = await run_in_threadpool(console.ledger)
    archive = await run_in_threadpool(console.archive.overview, 20)
    restored = request.query_params.get("restored")
    return render(
        request,
        "maintenance.html",
        {
            "title": "Maintenance",
            "sweeps": sweeps,
            "ledger": ledger,
            "archive": archive,
            "restored": restored if restored and restored.isdigit() else None,
            "now_ms": console.admin.now(),
        },
    )


async def dry_run_fragment(request: Request) -> Response:
    report = await run_in_threadpool(console_of(request).dry_run)
    return render(request, "_dry_run.html", {"report": report})


async def trees_page(request: Request) -> Response:
    search = (request.query_params.get("q") or "").strip()[:128] or None
    trees = await run_in_threadpool(console_of(request).trees, search)
    return render(request, "trees.html", {"title": "Memory trees", "trees": trees, "q": search or ""})


async def tree_page(request: Request) -> Response:
    tree_id = request.path_params["tree_id"]
    shape = await run_in_threadpool(console_of(request).tree, tree_id)
    if shape is None:
        return render(request, "error.html", {"title": "not found", "message": f"no tree {tree_id}"}, 404)
    return render(request, "tree.html", {"title": f"tree {tree_id}", "tree": shape})


async def node_children(request: Request) -> Response:
    children = await run_in_threadpool(console_of(request).children, request.path_params["node_id"])
    return render(request, "_nodes.html", {"nodes": children})


async def node_path(request: Request) -> Response:
    node_id = request.path_params["node_id"]
    path = await run_in_threadpool(console_of(request).path, node_id)
    if not path:
        return render(
            request, "error.html", {"title": "not found", "message": f"no chunk or summary {node_id}"}, 404
        )
    return render(request, "path.html", {"title": f"path of {node_id}", "path": path})


FAILURE_WINDOWS_H = (1, 6, 24, 24 * 7, 24 * 30)


async def failures_page(request: Request) -> Response:
    console = console_of(request)
    raw = request.query_params.get("hours") or "24"
    if not raw.isdigit() or int(raw) not in FAILURE_WINDOWS_H:
        message = f"hours must be one of {', '.join(map(str, FAILURE_WINDOWS_H))}"
        return render(request, "error.html", {"title": "bad window", "message": message}, 400)
    hours = int(raw)
    groups = await run_in_threadpool(console.failures, hours * 3_600_000)
    return render(
        request,
        "failures.html",
        {
            "title": "Retrieval failures",
            "groups": groups,
            "hours": hours,
            "windows": FAILURE_WINDOWS_H,
            "total": sum(g.count for g in groups),
        },
    )


async def job_action(request: Request) -> Response:
    console = console_of(request)
    job_id = request.path_params["job_id"]
    action = request.path_params["action"]
    if action not in {"retry", "cancel"}:
        return render(request, "error.html", {"title": "not found", "message": f"no action {action!r}"}, 404)
    try:
        await check_action(request)
    except Refused as refused:
        return refusal(request, refused)
    actor = request.state.actor
    try:
        if action == "retry":
            await run_in_threadpool(console.retry, job_id, actor)
        else:
            await run_in_threadpool(console.cancel, job_id, actor)
    except (JobNotFound, ValidationError) as exc:
        return render(request, "error.html", {"title": f"cannot {action}", "message": str(exc)}, 409)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _requeue_filter(params: Any) -> JobFilter:
    which = read_filter(params)
    return JobFilter(
        table=which.table,
        kind=which.kind,
        status="failed",
        failure_class=which.failure_class,
        older_than_min=which.older_than_min,
    )


async def requeue_page(request: Request) -> Response:
    console = console_of(request)
    try:
        which = _requeue_filter(request.query_params)
    except BadFilter as exc:
        return render(request, "error.html", {"title": "bad filter", "message": str(exc)}, 400)
    count = await run_in_threadpool(console.count_failed, which.requeue_filter())
    return render(request, "requeue.html", {"title": "Requeue failed jobs", "filter": which, "count": count})


async def requeue_action(request: Request) -> Response:
    console = console_of(request)
    try:
        form = await check_action(request)
        which = _requeue_filter(form)
    except Refused as refused:
        return refusal(request, refused)
    except BadFilter as exc:
        return render(request, "error.html", {"title": "bad filter", "message": str(exc)}, 400)
    counted = await run_in_threadpool(console.count_failed, which.requeue_filter())
    if form.get("confirm_count") != str(counted):
        message = (
            f"the filter now matches {counted} failed jobs, not the {form.get('confirm_count')}"
            " you confirmed: look again before requeueing"
        )
        return render(request, "error.html", {"title": "not requeued", "message": message}, 409)
    moved = await run_in_threadpool(console.requeue, which.requeue_filter(), request.state.actor)
    return RedirectResponse(f"/jobs?{which.query(requeued=moved)}", status_code=303)


async def restore_action(request: Request) -> Response:
    """Restore a run, a conversation's messages or a job from the archive (form: scope, key)."""
    console = console_of(request)
    try:
        form = await check_action(request)
        target = RestoreTarget.of(form.get("scope", ""), form.get("key", ""))
    except Refused as refused:
        return refusal(request, refused)
    except ValidationError as exc:
        return render(request, "error.html", {"title": "not restored", "message": str(exc)}, 400)
    done = await run_in_threadpool(console.restore, target, request.state.actor)
    return RedirectResponse(f"/maintenance?restored={done.total_restored}#archive", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/queues", queues_page),
        Route("/queues/table", queues_fragment),
        Route("/jobs", jobs_page),
        Route("/jobs/{job_id}", job_page),
        Route("/jobs/{job_id}/{action:str}", job_action, methods=["POST"]),
        Route("/maintenance", maintenance_page),
        Route("/maintenance/plan", dry_run_fragment),
        Route("/archive/restore", restore_action, methods=["POST"]),
        Route("/failures", failures_page),
        Route("/trees", trees_page),
        Route("/trees/{tree_id}", tree_page),
        Route("/nodes/{node_id}/children", node_children),
        Route("/nodes/{node_id}/path", node_path),
        Route("/requeue", requeue_page),
        Route("/requeue", requeue_action, methods=["POST"]),
    ]


__all__ = ["Refused", "check_action", "console_of", "routes", "templates"]
