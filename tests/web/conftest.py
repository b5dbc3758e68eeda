"""A real console for the web tests: ``memtasks.web`` served by uvicorn on a free port, over a
real SQLite file or PostgreSQL schema."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from memtasks.config import Settings, load_settings
from memtasks.storage.engine import get_engine
from memtasks.web.app import create_console
from tests.pipeline.conftest import broker_url, fleet, lock_url

__all__ = ["broker_url", "fleet", "lock_url"]  # the pipeline's fixtures: a real fleet for the browser tests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningConsole:
    base: str
    settings: Settings
    port: int

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10, **kwargs)

    @contextlib.contextmanager
    def session(self, **kwargs: Any) -> Iterator[tuple[httpx.Client, str]]:
        """A client that holds the anti-forgery cookie, and its token."""
        with self.client(**kwargs) as client:
            response = client.get("/api/session")
            response.raise_for_status()
            yield client, str(response.json()["csrf_token"])


@pytest.fixture
def serve_console() -> Iterator[Callable[..., RunningConsole]]:
    """``serve_console(url, host=…, **settings)``: a console over the database at ``url``,
    listening on ``host`` (loopback unless said)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(url: str, *, host: str = "127.0.0.1", **overrides: Any) -> RunningConsole:
        get_engine(url)  # migrated to the newest revision, as `memtasks db upgrade` would
        settings = load_settings(database_url=url, **overrides)
        port = _free_port()
        config = uvicorn.Config(
            create_console(settings), host=host, port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="console", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        shown = "127.0.0.1" if host in {"0.0.0.0", "127.0.0.1"} else host
        return RunningConsole(base=f"http://{shown}:{port}", settings=settings, port=port)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def start_console(db_url: str, serve_console: Callable[..., RunningConsole]) -> Callable[..., RunningConsole]:
    """``start_console(**settings)``: a console over the test's database (SQLite, then PostgreSQL)."""

    def start(**overrides: Any) -> RunningConsole:
        return serve_console(db_url, **overrides)

    return start
