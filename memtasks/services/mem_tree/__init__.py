"""Memory-tree job handlers: the registry, the built-in handlers and the runner."""

from memtasks.services.mem_tree.registry import Defer, Followup, HandlerContext, HandlerRegistry, HandlerSpec
from memtasks.services.mem_tree.runner import MemTreeRunner, Outcome, RunResult

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
