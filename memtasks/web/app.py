"""The console's ASGI application: Starlette, Jinja2 templates, htmx and uPlot served from the
package (no CDN, no build step), behind the guard of :mod:`memtasks.web.security`.

``create_console(settings)`` opens the database (read-only with ``MEMTASKS_WEB_READ_ONLY``; the
schema must be at the newest revision, as for every ``memtasks`` command) and returns the
app; ``memtasks web`` serves it with uvicorn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtasks.config import Settings
from memtasks.services.console import Console
from memtasks.services.runtime import open_runtime
from memtasks.web import api, pages
from memtasks.web.security import CSRF_COOKIE, authenticate, new_token, parse_basic_auth
from memtasks.worker.routing import queue_of

HERE = Path(__file__).parent


class Guard:
    """Authentication for every request, and the anti-forgery cookie set on first visit."""

    def __init__(self, app: ASGIApp, users: dict[str, str] | None) -> None:
        self.app = app
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if scope["path"] == "/healthz":  # for probes: answers without credentials, tells nothing
            await PlainTextResponse("ok")(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        verdict = authenticate(conn.headers, conn.client.host if conn.client else None, self.users)
        if verdict.actor is None:
            headers = (
                {"WWW-Authenticate": 'Basic realm="memtasks", charset="UTF-8"'}
                if verdict.status == 401
                else {}
            )
            refusal: Response
            if conn.url.path.startswith("/api/"):
                refusal = JSONResponse({"error": verdict.reason}, status_code=verdict.status, headers=headers)
            else:
                refusal = PlainTextResponse(verdict.reason, status_code=verdict.status, headers=headers)
            await refusal(scope, receive, send)
            return
        token = conn.cookies.get(CSRF_COOKIE)
        fresh = token is None or len(token) < 20
        if fresh:
            token = new_token()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["actor"] = verdict.actor
        state["csrf"] = token

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                # How long the console took over this response (browsers show it; bench/console.py reads it).
                spent_ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={spent_ms:.1f}".encode()))
                if fresh:
                    cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def build_app(console: Console, users: dict[str, str] | None) -> Starlette:
    routes = [
        *pages.routes(),
        *api.routes(),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    app.state.templates = pages.templates()
    app.add_middleware(Guard, users=users)
    return app


def create_console(settings: Settings) -> Starlette:
    secret = settings.web_basic_auth
    users = parse_basic_auth(secret.get_secret_value()) if secret is not None else None
    runtime = open_runtime(settings, read_only=settings.web_read_only, migrate=False)
    llm = settings.tree_uses_llm
    console = Console(runtime, settings.web_read_only, lambda kind: queue_of(kind, tree_uses_llm=llm))
    return build_app(console, users)


__all__ = ["Guard", "build_app", "create_console"]
