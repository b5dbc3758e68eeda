"""Imports point one way (the layers of the README's Layout) and never in a circle.

Read from the source (every ``import`` statement, at module level or inside a function):
each memtasks module may import only the layers below its own, and the graph of memtasks
modules importing each other has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "memtasks"

LAYERS = {
    "domain": 0,
    "config": 1,
    "storage": 2,
    "locks": 2,
    "permits": 2,
    "services": 3,
    "worker": 4,
    "producer": 5,
    "client": 5,
    "command": 5,
    "cli": 5,
    "metrics": 5,
    "demo": 5,
    "web": 5,
}
"""A module may import its own layer and the ones with a smaller number."""
MAY_ALSO = {
    ("cli", "worker"): "the CLI starts `celery` commands with the worker's queue names",
    ("metrics", "worker"): "the exporter labels queues with the worker's routing",
    ("web", "worker"): "the console labels queues with the worker's routing",
    ("producer", "worker"): "the producer publishes with the worker's client configuration",
    ("client", "worker"): "the broker-only client publishes with the worker's queues, routes and task names",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from package import submodule`` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.add(
                    sub
                    if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                    else node.module
                )
    return {name for name in found if name == "memtasks" or name.startswith("memtasks.")}


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_layers_below_it(module: str) -> None:
    own = layer(module)
    if own not in LAYERS:
        return  # memtasks/__init__.py
    for imported in GRAPH[module]:
        other = layer(imported)
        if other not in LAYERS or (own, other) in MAY_ALSO:
            continue
        assert LAYERS[other] <= LAYERS[own], f"{module} imports {imported}: {own} may not reach up to {other}"


def test_the_storage_of_the_faces_goes_through_services() -> None:
    faces = [m for m in MODULES if layer(m) in {"cli", "producer", "metrics", "worker", "web"}]
    for module in faces:
        assert not [i for i in GRAPH[module] if layer(i) == "storage"], f"{module} imports storage directly"


def test_no_module_imports_itself_back() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for imported in sorted(GRAPH[module]):
            if seen.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if imported not in seen:
                visit(imported, [*path, imported])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])
