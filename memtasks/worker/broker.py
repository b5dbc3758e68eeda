"""A worker that survives a Redis restart: kombu's Redis channel, made to close when the
broker is gone.

A channel closing while its ``BRPOP`` is in flight first reads that reply (so a message the
server popped is not lost at a warm shutdown). When the broker itself went away, that read
raises a connection error and the close stops half-way: the channel stays open. Celery's
reconnect then drops the transport and closes the connection again; the second close finds
no transport to reach Redis through and raises ``AttributeError``, which Celery reports as
an unrecoverable error — the worker exits on every broker restart that finds it holding an
unacknowledged message (always, under ``acks_late`` with a job running).

Here a connection error on that read means there is nothing left to read: the close goes on
(its attempt to restore unacknowledged messages fails like any command to a dead broker and
is ignored by the caller), and Celery reconnects instead of exiting. The jobs lose nothing
either way: their rows are the truth, and the dispatcher republishes what the broker lost.

:func:`install` makes kombu's Redis transport open these channels (it keeps its ``redis://``
name, which Flower and the logs show); :func:`memtasks.worker.app.create_app` calls it.
"""

from __future__ import annotations

from queue import Empty

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors:
                pass  # the broker is gone: no reply will come (the read left the poll)
        super().close()


def install() -> None:
    """Make kombu's Redis transport open :class:`Channel` (idempotent)."""
    if not issubclass(redis.Transport.Channel, Channel):
        redis.Transport.Channel = Channel
