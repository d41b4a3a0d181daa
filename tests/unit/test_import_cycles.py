"""No import cycle in the kubepredict package.

Every module's imports are read from its source (``ast``): module-level and function-level ones alike,
relative imports resolved, ``from pkg import name`` counted as an import of ``pkg.name`` when that is
a module (else of ``pkg``). A package's ``__init__`` is not counted as imported by its submodules,
since importing ``a.b`` only runs ``a/__init__`` (which this walk checks on its own).
"""

from __future__ import annotations

import ast
from pathlib import Path

import kubepredict

ROOT = Path(kubepredict.__file__).parent
PACKAGE = "kubepredict"


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.relative_to(ROOT).parts:
            continue  # Alembic scripts, loaded by Alembic from files, not imported
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(name: str) -> None:
        # The deepest module of the package that the name denotes.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module) if node.level else (node.module or "")
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                add(full if full in modules else target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component, for a readable failure."""
    members = set(component)
    start = component[0]
    trail, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(n for n in graph[node] if n in members)
        back = [n for n in nxt if n == start]
        if back and len(trail) > 1:
            return trail + [start]
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return trail + [nxt[0]] if nxt else trail
        node = fresh[0]
        trail.append(node)
        seen.add(node)


def test_the_walk_sees_imports_of_every_kind():
    graph = _graph()
    assert len(graph) > 50
    # module level, relative: ``from .base import JobRunner, JobSpec``
    assert "kubepredict.runner.base" in graph["kubepredict.runner.dispatcher"]
    # function level, relative: ``from .local import LocalProcessRunner`` inside make_runner
    assert "kubepredict.runner.local" in graph["kubepredict.runner.dispatcher"]


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _path_within(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    graph = _graph()
    cycles = [" -> ".join(_path_within(graph, c)) for c in _cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
