"""The direction of dependencies: service → sync → integrations, and inside sync as
sync/__init__.py says, with no import cycle anywhere.

Imports are read from the source with `ast`, those under `if TYPE_CHECKING:` included: a
cycle that only type checking sees is still two modules that cannot be understood apart.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "sync", "integrations")

# Inside sync: what each sub-package may import (besides itself and errors).
SYNC_LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "store": set(),
    "matching": {"store"},
    "okrs": {"store", "matching"},
    "reports": {"store", "matching", "okrs"},
    "ingest": {"store", "matching", "reports"},
    "comments": {"store", "matching", "reports"},
}
FOUNDATIONS = {"errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project modules `path` imports (absolute, or relative to `name`).

    `from package import module` is an edge to the module; `from package import name`, to
    the package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def graph() -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    known = modules()
    return {
        name: {
            target for target in imports(path, name, known) if target in known and target != name
        }
        for name, path in known.items()
    }


GRAPH = graph()
EDGES = sorted((source, target) for source, targets in GRAPH.items() for target in targets)


def _top(name: str) -> str:
    return name.split(".")[0]


def _sync_part(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def test_the_packages_depend_one_way() -> None:
    order = {"service": 2, "sync": 1, "integrations": 0}
    wrong = [(s, t) for s, t in EDGES if order[_top(t)] > order[_top(s)]]
    assert wrong == []


def test_only_the_demo_uses_the_sandboxes() -> None:
    wrong = [
        (s, t)
        for s, t in EDGES
        if t.startswith("integrations.sandbox")
        and not s.startswith(("integrations.sandbox", "service.demo"))
    ]
    assert wrong == []


@pytest.mark.parametrize("part", sorted(SYNC_LAYERS))
def test_each_part_of_sync_imports_only_what_it_may(part: str) -> None:
    allowed = SYNC_LAYERS[part] | FOUNDATIONS | {part}
    wrong = [
        (s, t)
        for s, t in EDGES
        if _top(s) == "sync" and _sync_part(s) == part and _top(t) == "sync"
        if _sync_part(t) not in allowed
    ]
    assert wrong == []


def test_every_part_of_sync_is_placed() -> None:
    parts = {_sync_part(name) for name in GRAPH if _top(name) == "sync" and name != "sync"}
    assert parts == set(SYNC_LAYERS)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    # A package imports nothing of its own modules here, so parent → child edges are real.
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
