"""Record retrieval failures without ever slowing the recall path down.

:meth:`RetrievalFailureLogger.log` appends to a bounded in-memory queue and returns; a
daemon thread writes batches through a :class:`FailureSink`. Nothing is lost silently:
every logged record ends up ``written``, ``dropped`` (queue full, or logged after
shutdown) or ``lost`` (its batch failed after the retries, or shutdown timed out), and
``stats()`` reports the counters. The sink is a protocol, so a Celery sink can replace
the database one without touching the logger.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from sqlalchemy import Engine

from memtasks.domain.clock import Clock, system_clock
from memtasks.domain.errors import ValidationError
from memtasks.domain.retrieval import DEFAULT_RETENTION_MS, RetrievalFailure, retention_cutoff
from memtasks.storage.retrieval_repo import PURGE_BATCH, FailureSummary, RetrievalFailures

log = logging.getLogger(__name__)

CODE_CONFIG = "retrieval.logger.config"
MAX_BACKOFF_S = 1.0
EXIT_TIMEOUT_S = 5.0


class FailureSink(Protocol):
    """Where the logger's batches go. ``write`` either stores the whole batch or raises."""

    def write(self, batch: Sequence[RetrievalFailure]) -> None: ...


class DatabaseSink:
    """Writes each batch in one transaction of ``engine``."""

    def __init__(self, engine: Engine, *, clock: Clock = system_clock) -> None:
        self.repo = RetrievalFailures(engine, clock=clock)
        self._pid = os.getpid()

    def write(self, batch: Sequence[RetrievalFailure]) -> None:
        if self._pid != os.getpid():
            # A forked child must not use the parent's pooled connections: drop them
            # (without closing the parent's sockets) and let the pool open its own.
            self.repo.engine.dispose(close=False)
            self._pid = os.getpid()
        self.repo.insert_batch(batch)


@dataclass(frozen=True, slots=True)
class LoggerStats:
    """A consistent snapshot of the counters; ``logged == written + dropped + lost + pending``."""

    logged: int
    written: int
    dropped: int
    lost: int
    batches: int
    retries: int
    pending: int


_Item = tuple[RetrievalFailure, int]


class RetrievalFailureLogger:
    """Non-blocking, batching logger of retrieval failures (see the module docstring).

    A batch is written when ``batch_size`` records are queued or ``flush_interval_s``
    after the writer saw the first of them, whichever comes first. A failed write is
    retried ``max_batch_retries`` times with a short exponential backoff (in the writer
    thread: ``log()`` never waits for it), then its records are counted as lost.
    """

    def __init__(
        self,
        sink: FailureSink,
        *,
        capacity: int = 256,
        batch_size: int = 16,
        flush_interval_s: float = 0.1,
        max_batch_retries: int = 3,
        retry_backoff_s: float = 0.05,
        clock: Clock = system_clock,
        register_atexit: bool = True,
        exit_timeout_s: float = EXIT_TIMEOUT_S,
    ) -> None:
        _check(capacity >= 1, f"capacity must be at least 1, got {capacity}")
        _check(batch_size >= 1, f"batch_size must be at least 1, got {batch_size}")
        _check(batch_size <= capacity, f"batch_size {batch_size} exceeds capacity {capacity}")
        _check(flush_interval_s > 0, f"flush_interval_s must be positive, got {flush_interval_s}")
        _check(max_batch_retries >= 0, f"max_batch_retries must not be negative, got {max_batch_retries}")
        _check(retry_backoff_s >= 0, f"retry_backoff_s must not be negative, got {retry_backoff_s}")
        self._sink = sink
        self._capacity = capacity
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_retries = max_batch_retries
        self._retry_backoff_s = retry_backoff_s
        self._clock = clock
        self._exit_timeout_s = exit_timeout_s
        self._closed = False
        self._reset_process_state()
        _live.add(self)
        _install_fork_hook()
        self._atexit_registered = register_atexit
        if register_atexit:
            atexit.register(self._at_exit)
        self._start_writer()

    def _reset_process_state(self) -> None:
        """Locks, queue, counters and writer of this process (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._abandon_event = threading.Event()
        self._queue: deque[_Item] = deque()
        self._inflight = 0
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._logged = self._written = self._dropped = self._lost = 0
        self._batches = self._retries = 0

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._run, name="memtasks-retrieval-failures", daemon=True)
        self._thread.start()

    # ── the hot path ─────────────────────────────────────────────────────────

    def log(self, record: RetrievalFailure) -> bool:
        """Queue ``record`` without blocking; False when it was dropped (and counted)."""
        if not isinstance(record, RetrievalFailure):
            raise TypeError(f"log() takes a RetrievalFailure, got {type(record).__name__}")
        at_ms = record.created_at_ms if record.created_at_ms is not None else self._clock()
        with self._lock:
            self._logged += 1
            if self._closed or len(self._queue) >= self._capacity:
                self._dropped += 1
                return False
            if self._thread is None:  # first record in a forked child
                self._start_writer()
            self._queue.append((record, at_ms))
            size = len(self._queue)
            if size == 1 or size == self._batch_size:
                self._wakeup.notify()
            return True

    def stats(self) -> LoggerStats:
        with self._lock:
            return LoggerStats(
                logged=self._logged,
                written=self._written,
                dropped=self._dropped,
                lost=self._lost,
                batches=self._batches,
                retries=self._retries,
                pending=len(self._queue) + self._inflight,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    # ── shutdown ─────────────────────────────────────────────────────────────

    def shutdown(self, timeout: float | None = EXIT_TIMEOUT_S) -> bool:
        """Write everything queued, then stop the writer. Idempotent.

        Returns True when the writer finished within ``timeout`` seconds (``None``: no
        limit). Otherwise what is still queued or being written is counted as lost (a
        batch that the stuck writer completes later is moved back to ``written``).
        """
        with self._lock:
            self._closed = True
            self._wakeup.notify_all()
            thread = self._thread
            abandoned = self._abandoned
        if self._atexit_registered:
            self._atexit_registered = False
            atexit.unregister(self._at_exit)
        if abandoned:
            return False
        finished = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            finished = not thread.is_alive()
            if not finished:
                self._abandon()
        stats = self.stats()
        if stats.dropped or stats.lost:
            log.warning(
                "memtasks.retrieval_failures shutdown: %d logged, %d written, %d dropped, %d lost",
                stats.logged,
                stats.written,
                stats.dropped,
                stats.lost,
            )
        return finished

    def _abandon(self) -> None:
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
            self._lost += len(self._queue) + self._inflight
            self._inflight = 0
            self._queue.clear()
            self._wakeup.notify_all()
        self._abandon_event.set()

    def _at_exit(self) -> None:
        self.shutdown(self._exit_timeout_s)

    def __enter__(self) -> RetrievalFailureLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # ── the writer thread ────────────────────────────────────────────────────

    def _run(self) -> None:
        try:
            while batch := self._take_batch():
                self._write(batch)
        except BaseException:
            log.exception("memtasks.retrieval_failures writer crashed; queued records are lost")
            with self._lock:
                self._closed = True
                if not self._abandoned:
                    self._lost += len(self._queue) + self._inflight
                self._inflight = 0
                self._queue.clear()

    def _take_batch(self) -> list[_Item]:
        """The next batch (empty once closed and drained, or abandoned)."""
        with self._wakeup:
            while not self._queue:
                if self._closed or self._abandoned:
                    return []
                self._wakeup.wait()
            deadline = time.monotonic() + self._flush_interval_s
            while len(self._queue) < self._batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            if self._abandoned:
                return []
            size = min(self._batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            self._inflight = size
            return batch

    def _write(self, items: list[_Item]) -> None:
        batch = [record.stamped(at_ms) for record, at_ms in items]
        size = len(batch)
        attempt = 0
        while True:
            try:
                self._sink.write(batch)
            except Exception as exc:
                error: Exception = exc
            else:
                with self._lock:
                    if self._abandoned:  # counted as lost by shutdown: it was written after all
                        self._lost -= size
                    else:
                        self._inflight = 0
                    self._written += size
                    self._batches += 1
                return
            with self._lock:
                if self._abandoned:
                    return
                give_up = attempt >= self._max_retries
                if give_up:
                    self._inflight = 0
                    self._lost += size
                else:
                    self._retries += 1
            if give_up:
                log.warning(
                    "memtasks.retrieval_failures: %d records lost after %d attempts: %s",
                    size,
                    attempt + 1,
                    _first_line(error),
                )
                return
            attempt += 1
            delay = min(self._retry_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            log.info(
                "memtasks.retrieval_failures: batch write failed (attempt %d), retrying in %.3f s: %s",
                attempt,
                delay,
                _first_line(error),
            )
            if self._abandon_event.wait(delay):
                return

    # ── fork ─────────────────────────────────────────────────────────────────

    def _after_fork_in_child(self) -> None:
        # The parent keeps writing what it queued; the child starts empty, with fresh
        # locks (one may have been held at fork time) and a writer started on first use.
        self._reset_process_state()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message, code=CODE_CONFIG)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


_live: weakref.WeakSet[RetrievalFailureLogger] = weakref.WeakSet()
_fork_hook = threading.Lock()
_fork_hook_installed = False


def _reinit_in_child() -> None:
    for logger in list(_live):
        logger._after_fork_in_child()


def _install_fork_hook() -> None:
    global _fork_hook_installed
    with _fork_hook:
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reinit_in_child)
            _fork_hook_installed = True


def purge_retrieval_failures(
    engine: Engine,
    retention_ms: int = DEFAULT_RETENTION_MS,
    clock: Clock = system_clock,
    *,
    batch: int = PURGE_BATCH,
) -> int:
    """Delete the retrieval failures older than ``retention_ms``; returns how many (beat task)."""
    cutoff = retention_cutoff(clock(), retention_ms)
    deleted = RetrievalFailures(engine, clock=clock).purge_before(cutoff, batch=batch)
    log.info("memtasks.retrieval_failures purge: %d rows created before %d deleted", deleted, cutoff)
    return deleted


def retrieval_report(engine: Engine, window_ms: int, clock: Clock = system_clock) -> list[FailureSummary]:
    """Retrieval failures grouped by type and strategy over the last ``window_ms``."""
    return RetrievalFailures(engine, clock=clock).report_window(window_ms)
