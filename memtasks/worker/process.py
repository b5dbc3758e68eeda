"""One :class:`~memtasks.services.fleet.FleetServices` per worker process and app.

Built on first use, after the fork: a forked child disposes the engines it inherited and
builds its own; at a graceful shutdown the leases still held are handed back.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from memtasks.config import Settings
from memtasks.services.fleet import FleetServices
from memtasks.services.runtime import dispose_engines, open_runtime
from memtasks.worker.publisher import CeleryPublisher

log = logging.getLogger("memtasks.worker")

_services: dict[int, FleetServices] = {}


def services_for(app: Celery) -> FleetServices:
    """This process's services for ``app``."""
    services = _services.get(id(app))
    if services is None:
        settings: Settings = app.conf.memtasks_settings
        publisher = CeleryPublisher(app, settings)
        services = _services[id(app)] = FleetServices(open_runtime(settings), publisher)
        publisher.llm_bound = lambda kind: services.mem_tree.registry.llm_bound(kind)
    return services


def _after_fork(**_: object) -> None:
    """A forked child must not share its parent's database connections."""
    _services.clear()
    dispose_engines()


def _release_leases(**_: object) -> None:
    for services in list(_services.values()):
        try:
            services.release_held()
        except Exception as exc:  # the leases expire and are recovered anyway
            log.warning("memtasks.worker: could not release held leases: %s", exc)


def connect_signals() -> None:
    """Connect the per-process hooks (once; called when an app is created)."""
    signals.worker_process_init.connect(_after_fork, weak=False, dispatch_uid="memtasks.after_fork")
    signals.worker_process_shutdown.connect(_release_leases, weak=False, dispatch_uid="memtasks.release")


__all__ = ["connect_signals", "services_for"]
