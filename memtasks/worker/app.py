"""The Celery app: ``celery -A memtasks.worker.app worker|beat|flower``.

Importing this module does nothing: no environment is read, nothing connects, nothing is
patched. ``memtasks.worker.app.app`` is built on first access (which is what ``celery -A``
does) from the environment's :class:`~memtasks.config.Settings`; :func:`create_app` builds
one from given settings. Worker processes — and only they — install the broker-restart
channel (:mod:`memtasks.worker.broker`) when the worker starts.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery, signals

from memtasks.config import Settings, load_settings
from memtasks.services.sweeps import intervals
from memtasks.worker import broker, names, process
from memtasks.worker.conf import celery_conf
from memtasks.worker.names import MAINTENANCE, SWEEPS
from memtasks.worker.tasks import register


def beat_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule``: every sweep on the ``maintenance`` queue (the sweep
    registry's intervals).

    The messages carry no ``expires``: Celery writes it as a moment by the beat host's clock
    and each worker compares it with its own, so a beat whose clock runs behind the workers'
    sent messages that arrived already expired and nothing was swept. A stale tick is
    harmless instead: the sweep claims its slot by the database's clock, and a message of a
    slot already run (a backlog after an outage, a second beat) is skipped at that claim."""
    return {
        name: {
            "task": SWEEPS[name],
            "schedule": interval,
            "args": [name, interval],
            "options": {"queue": MAINTENANCE},
        }
        for name, interval in intervals(settings).items()
    }


def _install_broker_channel(**_: object) -> None:
    broker.install()  # a worker survives a Redis restart (see memtasks.worker.broker)


def also_consume_celery(queues: Any) -> bool:
    """A worker that consumes ``default`` consumes Celery's default queue ``celery`` too: a
    ``send_task`` without ``queue=`` lands there, and its message is the only copy of its job.
    True when ``celery`` was added (``queues``: the app's ``amqp.queues`` after ``-Q``)."""
    consumed = queues.consume_from
    if names.DEFAULT not in consumed or names.CELERY in consumed:
        return False
    queues.select_add(queues[names.CELERY])
    return True


def _consume_celery_queue(instance: Any = None, **_: object) -> None:
    app = getattr(instance, "app", None)
    if app is not None and app.conf.get("memtasks_settings") is not None:  # memtasks' apps only
        also_consume_celery(app.amqp.queues)


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (the environment's by default), every task registered."""
    settings = settings or load_settings()
    app = Celery("memtasks", broker=settings.broker_url, set_as_current=False)
    app.conf.update(celery_conf(settings), beat_schedule=beat_entries(settings))
    app.conf.memtasks_settings = settings
    register(app, process.services_for)
    signals.worker_init.connect(_install_broker_channel, weak=False, dispatch_uid="memtasks.broker")
    # After ``-Q`` is applied (``celery worker`` only, as Celery documents this signal).
    signals.celeryd_after_setup.connect(
        _consume_celery_queue, weak=False, dispatch_uid="memtasks.celery_queue"
    )
    process.connect_signals()
    return app


_app: Celery | None = None
_app_lock = threading.Lock()


def __getattr__(name: str) -> Celery:
    """``app`` (and ``celery``, where Celery looks next): built on first access."""
    if name not in {"app", "celery"}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global _app
    with _app_lock:
        if _app is None:
            _app = create_app()
        return _app


__all__ = ["also_consume_celery", "beat_entries", "create_app"]
