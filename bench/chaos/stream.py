"""A steady stream of jobs from a thread of its own: job ``n`` made by ``make(n)``, sent in
batches so that ``per_s`` jobs a second leave on average (the network scenario, the soak)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


class SteadyStream:
    def __init__(
        self, enqueue: Callable[[Sequence[Any]], object], make: Callable[[int], Any], per_s: float, name: str
    ) -> None:
        self.enqueue = enqueue
        self.make = make
        self.per_s = per_s
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def finish(self, timeout_s: float = 10.0) -> None:
        """Stop sending; raise what stopped the stream early, if anything did."""
        self.stop.set()
        self.thread.join(timeout=timeout_s)
        if self.error is not None:
            raise RuntimeError(f"the producer stopped: {self.error}") from self.error

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - started) * self.per_s)
                batch = [self.make(n) for n in range(self.sent, due)]
                if batch:
                    self.enqueue(batch)
                    self.sent += len(batch)
                self.stop.wait(0.1)
        except BaseException as exc:
            self.error = exc
