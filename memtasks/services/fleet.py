"""The services of one worker process, wired from its settings (built on first use, after
the fork). Each capability lives in its own service; this module only connects them.

=================  ==========================================================
``mem_tree``       run a job by id, drain a batch (:class:`MemTreeRunner`)
``decay``          run a decay job for the fleet (:class:`DecayRunner`)
``remote``         enqueues that arrive as messages (:class:`RemoteIntake`)
``sweeps``         the periodic sweeps (:class:`SweepRegistry`)
``holding``        LLM permits and lease heartbeats (:class:`Holding`)
``budgets``        LLM budgets checked before an LLM-bound claim (:class:`Budgets`)
=================  ==========================================================
"""

from __future__ import annotations

from functools import cached_property

import redis

from memtasks.locks import redis_client
from memtasks.services.budgets import Budgets, budgets_for
from memtasks.services.decay_runner import DecayRunner
from memtasks.services.holding import Holding, holding_for
from memtasks.services.maintenance import Maintenance
from memtasks.services.mem_tree import MemTreeRunner
from memtasks.services.plugins import handler_registry, settings_verifier, summary_backend, text_models
from memtasks.services.publishing import Publisher
from memtasks.services.remote import RemoteIntake
from memtasks.services.runtime import Runtime, tree_config
from memtasks.services.sweeps import SweepRegistry


class FleetServices:
    def __init__(self, runtime: Runtime, publisher: Publisher) -> None:
        self.runtime = runtime
        self.publisher = publisher

    @cached_property
    def lock_client(self) -> redis.Redis:
        return redis_client(self.runtime.settings.lock_redis_url)

    @cached_property
    def holding(self) -> Holding:
        return holding_for(self.runtime.settings, self.lock_client)

    @cached_property
    def mem_tree(self) -> MemTreeRunner:
        s = self.runtime.settings
        return MemTreeRunner(
            self.runtime.engine,
            self.runtime.jobs,
            registry=handler_registry(s),
            models=text_models(s),
            config=tree_config(s),
            holding=self.holding,
            publisher=self.publisher,
            llm=s.tree_uses_llm,
            budgets=self.budgets,
        )

    @cached_property
    def budgets(self) -> Budgets | None:
        return budgets_for(self.runtime.engine, self.runtime.settings, self.runtime.jobs.clock)

    @cached_property
    def decay(self) -> DecayRunner:
        s = self.runtime.settings
        return DecayRunner(
            self.runtime.engine,
            self.runtime.decay,
            summary_backend=summary_backend(s),
            verifier=settings_verifier(s),
            holding=self.holding,
            budgets=self.budgets,
        )

    @cached_property
    def maintenance(self) -> Maintenance:
        return Maintenance(self.runtime, self.publisher, self.lock_client)

    @cached_property
    def remote(self) -> RemoteIntake:
        return RemoteIntake(self.maintenance)

    @cached_property
    def sweeps(self) -> SweepRegistry:
        return SweepRegistry(self.runtime.engine, self.lock_client, self.maintenance)

    def release_held(self) -> int:
        """Graceful shutdown: hand back the leases of jobs still running here (attempt refunded)."""
        if "holding" not in self.__dict__:
            return 0
        return self.holding.release_all()


__all__ = ["FleetServices"]
