"""Small test helpers: waiting on a condition and running calls at the same instant."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, insert

T = TypeVar("T")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``condition`` until it holds; fail when the deadline passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def all_at_once(count: int, call: Callable[[], T]) -> list[T]:
    """Run ``call`` in ``count`` threads released together by a barrier; their results."""
    barrier = threading.Barrier(count)

    def run() -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run) for _ in range(count)]
        return [f.result() for f in futures]


@contextmanager
def private_redis_server(directory: Path, password: str | None = None) -> Iterator[str]:
    """A ``redis-server`` of the caller's alone (no persistence), its URL without a database
    number; stopped afterwards. Tests elsewhere FLUSHALL the shared one. Fails naming the
    binary when Redis is not installed."""
    from bench.chaos.redis_server import PrivateRedis, find_redis_server

    binary = find_redis_server()
    if binary is None:
        raise AssertionError(
            "redis-server is not installed: these tests start a private Redis "
            "(`bash scripts/services.sh --install-redis`)"
        )
    server = PrivateRedis(directory, binary, password=password)
    server.start()
    try:
        yield server.server_url
    finally:
        server.stop()


def old_closed_conversation(engine: Engine, conversation_id: str, messages: int) -> None:
    """A conversation closed and last updated at the epoch, with ``messages`` messages: all of
    them prunable by any consolidation."""
    from memtasks.storage.memory_tables import conversations
    from memtasks.storage.memory_tables import messages as messages_t

    with engine.begin() as c:
        c.execute(
            insert(conversations).values(
                id=conversation_id,
                channel="t",
                sender_id="u",
                status="closed",
                started_at_ms=1,
                updated_at_ms=1,
                last_activity_ms=1,
            )
        )
        rows = [
            {"conversation_id": conversation_id, "role": "user", "content": f"m{i}", "timestamp_ms": 1}
            for i in range(messages)
        ]
        c.execute(insert(messages_t), rows)
