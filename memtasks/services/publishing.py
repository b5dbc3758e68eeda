"""Publishing run messages after commit: what the services need from whoever sends them.

The worker and the producer pass a Celery publisher (``memtasks.worker.publisher``); tests
may pass their own. A row is the truth and its message a hint: when a publish fails, the
rows are marked undispatched and the next ``dispatch_due`` sweep publishes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar

from memtasks.services.mem_tree.context import Followup


class DecayMessage(NamedTuple):
    """What routing a decay job's run message needs: its kind and whether it is an LLM summary."""

    job_id: str
    kind: str
    llm: bool = False


class Publisher(Protocol):
    """Sends the run messages of rows that were committed."""

    def mem_tree(self, jobs: Sequence[Followup]) -> None: ...

    def decay(self, jobs: Sequence[DecayMessage]) -> None: ...


M = TypeVar("M", Followup, DecayMessage)


def publish_or_forget(
    send: Callable[[Sequence[M]], None], forget: Callable[[Sequence[str]], int], jobs: Sequence[M]
) -> None:
    """Publish committed rows' messages; when that fails, mark the rows undispatched so the
    next ``dispatch_due`` sweep publishes them, and raise."""
    if not jobs:
        return
    try:
        send(jobs)
    except Exception:
        forget([j.job_id for j in jobs])
        raise


__all__ = ["DecayMessage", "Followup", "Publisher", "publish_or_forget"]
