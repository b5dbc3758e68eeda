"""The worker's consumer: a malformed message is discarded with one log line, never a dead
worker.

Celery turns each message into a request in the worker's main process. Some bodies and
headers that no Celery client sends make that code raise where Celery expects nothing
(``null`` or ``{"a": 1}`` as the body, a list as the task name, a message of an unknown task
without an id): the consumer stops with "Unrecoverable error", the worker exits — and the
message, never acknowledged, comes back to stop the next worker; a missing ``id`` header
raises a KeyError that kombu's Redis transport takes for a lost connection, so the consumer
reconnects and gets the same message back, forever. Here such an error
rejects that one message (it is not redelivered) and the worker goes on. Errors of the
broker connection still go to Celery, which reconnects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger("memtasks.worker")


def _header(message: Any, name: str) -> object:
    headers = getattr(message, "headers", None)
    return headers.get(name) if isinstance(headers, dict) else None


class GuardedConsumer(Consumer):  # type: ignore[misc]
    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)
        # kombu's Redis transport counts KeyError as a connection error; raised while a message
        # is read (a missing ``id`` header) it would restart the consumer and restore the same
        # message, forever. Here it is the message's fault.
        passthrough = tuple(e for e in (*self.connection_errors, *self.channel_errors) if e is not KeyError)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except passthrough:
                raise
            except Exception as exc:
                log.error(
                    "memtasks.worker: discarded a malformed message (task=%.80r id=%.80r): %s: %.300s",
                    _header(message, "task"),
                    _header(message, "id"),
                    type(exc).__name__,
                    exc,
                )
                if not message.acknowledged:
                    message.reject_log_error(log, self.connection_errors)
                return None

        return on_task_received


__all__ = ["GuardedConsumer"]
