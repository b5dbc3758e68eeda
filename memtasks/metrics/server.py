"""The exporter's HTTP server: ``/metrics``, ``/jobs/<id>`` and ``/healthz`` on one port.

* ``GET /metrics`` — the Prometheus exposition (``prometheus_client``'s WSGI app, which
  also speaks OpenMetrics and gzip), answered from the snapshot shared by every request.
* ``GET /jobs/<id>`` — one job by id (URL-quoted: ``/jobs/job%3A…`` or ``/jobs/dj_…``) as
  a JSON object (:func:`memtasks.services.job_view.job_view`): one read by primary key,
  not cached, so a producer polling its job sees it change. 404 ``{"error": "no job <id>"}``
  for an unknown id, 400 for a malformed path.
* ``GET /healthz`` — 200 ``{"ok": true}`` when the snapshot's read of the tables
  succeeded, 503 ``{"ok": false, "error": …}`` otherwise; it shares the snapshot (a probe
  every second still reads the tables once per interval).

Errors are one-line JSON bodies with URLs masked: never a traceback, never a password.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.metrics.collectors import QueueCollector
from memtasks.metrics.snapshot import DEFAULT_INTERVAL_S, SnapshotCache, describe
from memtasks.services.job_view import JobLookup

log = logging.getLogger("memtasks.metrics")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

MAX_ID_CHARS = 256
JSON = "application/json"


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per request; request threads never hold the process open."""

    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = dict(super().get_environ())
        environ["RAW_URI"] = self.path  # PATH_INFO is unquoted: "%2F" and "/" look alike there
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing per request (a scrape every few seconds would fill the log)."""


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    start_response(status, [("Content-Type", JSON), ("Content-Length", str(len(data)))])
    return [data]


def make_app(registry: CollectorRegistry, cache: SnapshotCache, jobs: JobLookup) -> WsgiApp:
    """The WSGI app routing the three paths; anything else is a JSON 404."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "/")
        method = str(environ.get("REQUEST_METHOD") or "GET")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if method not in {"GET", "HEAD"}:
            return _json(
                start_response, "405 Method Not Allowed", {"error": f"{method} not allowed: use GET"}
            )
        try:
            if path == "/healthz":
                return _health(start_response, cache)
            if path == "/jobs" or path.startswith("/jobs/"):
                return _job(start_response, jobs, environ, path)
        except Exception as exc:  # a body, never a traceback
            error = describe(exc)
            log.warning("memtasks.metrics: %s failed: %s", path[:80], error)
            return _json(start_response, "503 Service Unavailable", {"error": error})
        return _json(
            start_response, "404 Not Found", {"error": "not found: use /metrics, /jobs/<id> or /healthz"}
        )

    return app


def _health(start_response: StartResponse, cache: SnapshotCache) -> list[bytes]:
    snapshot = cache.get()
    if snapshot.ok:
        return _json(start_response, "200 OK", {"ok": True})
    return _json(start_response, "503 Service Unavailable", {"ok": False, "error": snapshot.error})


def _job(start_response: StartResponse, jobs: JobLookup, environ: dict[str, Any], path: str) -> list[bytes]:
    job_id = _job_id(environ, path)
    if job_id is None:
        return _bad(start_response)
    view = jobs.view(job_id)
    if view is None:
        return _json(start_response, "404 Not Found", {"error": f"no job {job_id}"})
    return _json(start_response, "200 OK", view)


def _job_id(environ: dict[str, Any], path: str) -> str | None:
    """The id of a ``/jobs/<id>`` path; None when the path is malformed."""
    # PATH_INFO arrives percent-decoded (as latin-1 text of the bytes); the raw URI keeps the
    # quoting, so an id that itself holds "/" (quoted as %2F) is told from a path segment.
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0]
    try:
        if raw.startswith("/jobs/"):
            quoted = raw[len("/jobs/") :]
            job_id = None if "/" in quoted else unquote(quoted, errors="strict")
        else:
            tail = path[len("/jobs/") :]
            job_id = None if "/" in tail else tail.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    if not job_id or len(job_id) > MAX_ID_CHARS or not job_id.isprintable():
        return None
    return job_id


def _bad(start_response: StartResponse) -> list[bytes]:
    return _json(
        start_response,
        "400 Bad Request",
        {"error": "malformed path: use /jobs/<job id>, the id URL-quoted (job%3A…, dj_…)"},
    )


def exporter_app(
    engine: Engine,
    *,
    clock: Clock = system_clock,
    interval_s: float = DEFAULT_INTERVAL_S,
    tree_uses_llm: bool = False,
) -> tuple[WsgiApp, SnapshotCache]:
    """The app of ``memtasks metrics`` over ``engine``, and the snapshot cache it shares."""
    cache = SnapshotCache(engine, interval_s=interval_s, clock=clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(cache, tree_uses_llm=tree_uses_llm))
    return make_app(registry, cache, JobLookup(engine)), cache


def serve(app: WsgiApp, address: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``app`` on ``address``:``port`` (port 0: any free one) from a daemon thread."""
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(_Server):
        address_family = family

    server = make_server(str(sockaddr[0]), port, app, Server, handler_class=_Handler)
    thread = threading.Thread(target=server.serve_forever, name="memtasks-metrics-http", daemon=True)
    thread.start()
    return server, thread


__all__ = ["exporter_app", "make_app", "serve"]
