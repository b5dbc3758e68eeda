"""Small test helpers: waiting on a condition and running calls at the same instant."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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
