"""The package's import graph: no circles, and no layer imports a layer above it.

Every ``import`` statement of every module counts: at module level, inside functions (a circle
hidden by a local import is still a circle: it only moves the failure to run time), and inside
``if TYPE_CHECKING:`` blocks. Those run only under a type checker, but a circle through them is
still two modules that each need the other to be understood (and one local import away from a
real circle), so they count too. An edge goes to the module an import names: ``from a.b import
c`` is an edge to ``a.b.c`` when that is a module of the package, else to ``a.b``; the parent
packages Python imports on the way are not edges (the lazy ``__init__`` files import nothing of
their own at run time).

Layers, lowest first: the core (everything not named below), then ``metrics`` and ``data``,
then ``callbacks``, then ``demo`` and ``cli``. A module may import its own layer and those below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dave_lightning

PACKAGE_DIR = Path(dave_lightning.__file__).parent
ROOT = "dave_lightning"

LAYERS = {"metrics": 1, "data": 1, "callbacks": 2, "demo": 3, "cli": 3}
LAYER_NAMES = {0: "core", 1: "metrics/data", 2: "callbacks", 3: "demo/cli"}

Graph = dict[str, set[str]]


def module_name(path: Path, package_dir: Path = PACKAGE_DIR, root: str = ROOT) -> str:
    parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules ``tree`` imports anywhere in its body (functions and blocks too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importer's package
                anchor = importer.split(".")[: len(importer.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if name in known}


def import_graph(package_dir: Path = PACKAGE_DIR, root: str = ROOT) -> Graph:
    paths = sorted(package_dir.rglob("*.py"))
    known = {module_name(path, package_dir, root) for path in paths}
    graph: Graph = {}
    for path in paths:
        name = module_name(path, package_dir, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = imported_modules(tree, name, path.name == "__init__.py", known) - {name}
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: Graph, component: set[str]) -> list[str]:
    """A closed path ``a -> b -> ... -> a`` through the component's first module (BFS)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def upward_imports(graph: Graph) -> list[str]:
    return [
        f"{source} ({LAYER_NAMES[layer(source)]}) imports {target} ({LAYER_NAMES[layer(target)]})"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(target) > layer(source)
    ]


def test_the_package_has_no_import_circle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_layer_imports_a_layer_above_it() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_graph_sees_imports_in_functions_and_type_checking_blocks() -> None:
    graph = import_graph()
    assert len(graph) > 50
    assert "dave_lightning.registry" in graph["dave_lightning"]  # under TYPE_CHECKING
    assert "dave_lightning.viz" in graph["dave_lightning.explain"]  # inside a function


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "pkg"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # hidden by an import inside a function
            {
                "__init__.py": "",
                "a.py": "from pkg.b import g\n",
                "b.py": "def g():\n    from pkg.a import f\n",
            },
            [["pkg.a", "pkg.b", "pkg.a"]],
        ),
        (  # through TYPE_CHECKING, over three modules, one import relative
            {
                "__init__.py": "",
                "a.py": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
                ),
                "b.py": "from . import c\n",
                "c.py": "import pkg.a\n",
            },
            [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]],
        ),
        ({"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "import os\n"}, []),
    ],
)
def test_a_circle_is_found_and_printed(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    package = _write_package(tmp_path, files)
    assert find_cycles(import_graph(package, "pkg")) == expected


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {"__init__.py": "", "core.py": "from pkg.callbacks import x\n", "callbacks.py": ""},
    )
    assert upward_imports(import_graph(package, "pkg")) == [
        "pkg.core (core) imports pkg.callbacks (callbacks)"
    ]
