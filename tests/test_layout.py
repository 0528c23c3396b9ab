"""The tree's shape: imports point down only, the rooms keep to where their code runs, functions fit a screen.

Every import counts, wherever it is written (top level, inside a function, under ``TYPE_CHECKING``):
an import moved into a function to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("driftloop", "stacks", "lambdas", "tools")
MAX_FUNCTION_LINES = 60
# Rooms of the package, and the rooms each may not import: the control layer (the package's top
# level and stores/) is what the decision Lambda carries; ml/ and components/ run in the job images;
# local/ only on one machine.
FORBIDDEN = {
    "control": ("driftloop.ml", "driftloop.components", "driftloop.local"),
    "driftloop.ml": ("driftloop.components", "driftloop.local"),
    "driftloop.components": ("driftloop.local",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    files = [ROOT / "app.py", *(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))]
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Every module of the tree that ``module`` imports, resolved to the module file it names."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    sources = _sources()
    known = set(sources)
    return {
        module: set(_imported(ast.parse(path.read_text()), module, path.name == "__init__.py", known))
        for module, path in sources.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _room(module: str) -> str | None:
    if module.startswith("driftloop."):
        second = ".".join(module.split(".")[:2])
        if second in FORBIDDEN:
            return second
        return None if second == "driftloop.local" else "control"
    return "control" if module == "driftloop" else None


def test_no_import_circle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(m for m in _sources() if _room(m)))
def test_imports_point_down_the_rooms(module: str) -> None:
    forbidden = FORBIDDEN[_room(module) or ""]
    wrong = sorted(t for t in import_graph()[module] if t.startswith(forbidden))
    assert not wrong, f"{module} ({_room(module)}) imports {wrong}"


def _long_functions() -> Iterator[str]:
    for module, path in _sources().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    yield f"{module}.{node.name}: {lines} lines"


def test_no_function_is_longer_than_a_screen() -> None:
    assert list(_long_functions()) == []
