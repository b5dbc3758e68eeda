"""A real console for the web tests: ``memtasks.web`` served by uvicorn on a free loopback port,
over a real SQLite file or PostgreSQL schema (the ``db_url`` fixture)."""

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningConsole:
    base: str
    settings: Settings

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
def start_console(db_url: str) -> Iterator[Callable[..., RunningConsole]]:
    get_engine(db_url)  # migrated to the newest revision, as `memtasks db upgrade` would
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: Any) -> RunningConsole:
        settings = load_settings(database_url=db_url, **overrides)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_console(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        thread = threading.Thread(target=server.run, name="console", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return RunningConsole(base=f"http://127.0.0.1:{port}", settings=settings)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
