"""The console's JSON API, beside the pages (documented in the README): for producers that
hold only a job id, and for scripts. Same guard as the pages; actions need the anti-forgery
token in ``X-CSRF-Token`` (``GET /api/session`` gives one with its cookie)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from memtasks.domain.errors import JobNotFound, ValidationError
from memtasks.domain.queues import QUEUES
from memtasks.services.admin import Table
from memtasks.web.filters import BadFilter, read_filter
from memtasks.web.pages import Refused, check_action, console_of


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def session(request: Request) -> Response:
    console = console_of(request)
    return JSONResponse(
        {"actor": request.state.actor, "csrf_token": request.state.csrf, "read_only": console.read_only}
    )


async def queues(request: Request) -> Response:
    overview = await run_in_threadpool(console_of(request).overview)
    return JSONResponse(overview.as_dict())


async def series(request: Request) -> Response:
    queue = request.query_params.get("queue") or None
    if queue is not None and queue not in QUEUES:
        return _error(400, f"queue must be one of {', '.join(QUEUES)}")
    points = await run_in_threadpool(console_of(request).points, queue)
    return JSONResponse(
        {
            "queue": queue,
            "minute_ms": [p.minute_ms for p in points],
            "finished": [p.finished for p in points],
            "wait_p50_s": [p.wait_p50_s for p in points],
            "wait_p95_s": [p.wait_p95_s for p in points],
            "run_p50_s": [p.run_p50_s for p in points],
            "run_p95_s": [p.run_p95_s for p in points],
        }
    )


async def jobs(request: Request) -> Response:
    console = console_of(request)
    try:
        which = read_filter(request.query_params)
    except BadFilter as exc:
        return _error(400, str(exc))
    kinds = console.kinds_of_queue(which.queue) if which.queue and which.table is Table.MEM_TREE else None
    now = console.admin.now()
    found, cursor = await run_in_threadpool(
        lambda: console.page(which.table, **which.page_arguments(now, kinds))
    )
    return JSONResponse(
        {"jobs": found, "next": None if cursor is None else f"/api/jobs?{which.query(before=cursor)}"}
    )


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    found = await run_in_threadpool(console_of(request).job, job_id)
    if found is None:
        return _error(404, f"no job {job_id}")
    view, actions = found
    return JSONResponse(view | {"operator_actions": [_action(a) for a in actions]})


def _action(a: Any) -> dict[str, Any]:
    return {"at_ms": a.at_ms, "actor": a.actor, "via": a.via, "action": a.action, "affected": a.affected}


async def job_action(request: Request) -> Response:
    console = console_of(request)
    job_id = request.path_params["job_id"]
    action = request.path_params["action"]
    if action not in {"retry", "cancel"}:
        return _error(404, f"no action {action!r}: retry or cancel")
    try:
        await check_action(request)
    except Refused as refused:
        return _error(refused.status, refused.reason)
    try:
        if action == "retry":
            view = await run_in_threadpool(console.retry, job_id, request.state.actor)
            return JSONResponse(view)
        cancelled = await run_in_threadpool(console.cancel, job_id, request.state.actor)
        return JSONResponse({"id": job_id, "cancelled": cancelled})
    except JobNotFound as exc:
        return _error(404, str(exc))
    except ValidationError as exc:
        return _error(409, str(exc))


async def requeue(request: Request) -> Response:
    console = console_of(request)
    try:
        await check_action(request)
        which = read_filter(request.query_params)
    except Refused as refused:
        return _error(refused.status, refused.reason)
    except BadFilter as exc:
        return _error(400, str(exc))
    moved = await run_in_threadpool(console.requeue, which.requeue_filter(), request.state.actor)
    return JSONResponse({"requeued": moved})


def routes() -> list[Route]:
    return [
        Route("/api/session", session),
        Route("/api/queues", queues),
        Route("/api/series", series),
        Route("/api/jobs", jobs),
        Route("/api/jobs/{job_id}", job),
        Route("/api/jobs/{job_id}/{action:str}", job_action, methods=["POST"]),
        Route("/api/requeue", requeue, methods=["POST"]),
    ]


__all__ = ["routes"]
