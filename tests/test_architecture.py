"""The house rules, as code: units import each other one way only, mpr/ stays small at the top,
functions stay short, and the components never reach up to the app or the bench harness.

A unit is a top-level package of the repository (planners/, worldmodel/, training/, installed as
mpr.planners, mpr.worldmodel, mpr.training) or a subpackage or module directly under mpr/.
Imports are read from the source (module level and inside functions alike), not executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FOLDERS = {"mpr": "mpr", "planners": "mpr.planners", "worldmodel": "mpr.worldmodel", "training": "mpr.training"}
MAX_TOP_MODULES = 8
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = [FOLDERS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def sources() -> dict[str, Path]:
    return {module_name(p): p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] == "mpr"}


def unit_graph() -> dict[str, set[str]]:
    known = sources()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        deps = {unit_of(m) for m in imports(path) if m in known}
        graph.setdefault(unit_of(module), set()).update(deps - {unit_of(module)})
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_no_import_circle_between_units():
    graph = unit_graph()
    assert "mpr.planners" in graph and "mpr.run" in graph  # the graph is read, not empty
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


# The house, bottom to top (README "Layout"): a unit imports only units of earlier layers.
LAYERS = [
    {"mpr", "mpr.errors"}, {"mpr.config", "mpr.owned"}, {"mpr.core"},
    {"mpr.alfworld"}, {"mpr.lm"}, {"mpr.learned"}, {"mpr.worldmodel"}, {"mpr.planners"},
    {"mpr.compose", "mpr.checks"}, {"mpr.run"}, {"mpr.training"}, {"mpr.app"}, {"mpr.__main__"},
]


def test_units_import_only_the_layers_below_them():
    graph = unit_graph()
    layer = {u: k for k, units in enumerate(LAYERS) for u in units}
    assert set(graph) == set(layer), f"units without a layer: {set(graph) ^ set(layer)}"
    upward = [f"{u} -> {v}" for u, deps in graph.items() for v in deps if layer[v] >= layer[u]]
    assert not upward, upward


def test_the_cycle_finder_finds_cycles():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_components_never_import_the_app_or_the_bench():
    graph = unit_graph()
    for unit in ("mpr.planners", "mpr.worldmodel", "mpr.training"):
        reach, todo = set(), [unit]
        while todo:  # everything the unit depends on, directly or not
            for v in graph.get(todo.pop(), ()):
                if v not in reach:
                    reach.add(v)
                    todo.append(v)
        assert "mpr.app" not in reach, f"{unit} depends on the app"
    for path in (REPO / "planners").rglob("*.py"):
        assert not {m for m in imports(path) if unit_of(m) not in ("mpr.core", "mpr.config", "mpr.errors",
                                                                  "mpr.planners")}, path


def test_few_modules_directly_under_mpr():
    top = sorted(p.name for p in (REPO / "mpr").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_every_package_says_what_belongs_in_it():
    for init in [*(REPO / "mpr").glob("*/__init__.py"), *(REPO / f / "__init__.py" for f in FOLDERS)]:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} has no docstring saying what belongs there"


def test_no_long_functions():
    long = []
    for folder in (*FOLDERS, "bench"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
