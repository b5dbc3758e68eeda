"""Memory-tree job handlers: the context they get, the registry, the built-in handlers, the
transaction each claimed job runs in and the runner workers and tests share."""

from memtasks.services.mem_tree.context import Defer, Followup, HandlerContext
from memtasks.services.mem_tree.registry import HandlerRegistry, HandlerSpec
from memtasks.services.mem_tree.runner import MemTreeRunner
from memtasks.services.mem_tree.transaction import Outcome, RunResult

__all__ = [
    "Defer",
    "Followup",
    "HandlerContext",
    "HandlerRegistry",
    "HandlerSpec",
    "MemTreeRunner",
    "Outcome",
    "RunResult",
]
