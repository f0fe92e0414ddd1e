"""The product packages import one another in one direction only.

studio -> projection, editing, training -> core: `core` imports none of the others, nothing below the
studio imports `studio`, and no module reaches itself through imports, whether they stand at module level
or inside a function (a lazy import still makes a circle: the modules cannot be understood, tested or
moved apart). Every .py file is parsed with `ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "training", "studio", "projection", "editing")
# package -> packages it must not import (studio -> projection, editing, training -> core)
FORBIDDEN = {"core": ("training", "studio", "projection", "editing"), "training": ("studio",),
             "projection": ("studio",), "editing": ("studio",)}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node anywhere in the tree (functions, methods, try blocks), except under
    `if TYPE_CHECKING:`, which never runs."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: set[str]) -> str | None:
    """The product module that `name` (a module, or a module's attribute) lives in, if any."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: product modules it imports} for every .py file of `packages` under `root`."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub; `from mod import name` imports mod
                targets = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
            for target in targets:
                dep = _resolve(target, modules)
                if dep is not None and dep != mod:
                    edges.add(dep)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_graph_covers_every_product_package(graph):
    for pkg in PACKAGES:
        assert pkg in graph and any(m.startswith(pkg + ".") for m in graph), pkg
    assert "core.ops.fused" in graph and "core.checkpoint" in graph["training.snapshot"]


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_packages_import_only_downwards(graph, pkg):
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] == pkg
                 for d in deps if d.split(".")[0] in FORBIDDEN[pkg])
    assert not bad, f"{pkg} must not import {', '.join(FORBIDDEN[pkg])}:\n  " + "\n  ".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """A circle closed by an import inside a function, or by a relative import, is found."""
    pkg = tmp_path / "core"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\n\n\ndef f():\n    from core.b import g\n    return g\n")
    (pkg / "b.py").write_text("from .sub import c\n\n\ndef g():\n    return c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("try:\n    import core.a as a\nexcept ImportError:\n    a = None\n")
    g = import_graph(tmp_path, ("core",))
    assert g["core.a"] == {"core.b"} and g["core.b"] == {"core.sub.c"} and g["core.sub.c"] == {"core.a"}
    assert find_cycle(g) == ["core.a", "core.b", "core.sub.c", "core.a"]
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import core.a\n")
    assert find_cycle(import_graph(tmp_path, ("core",))) is None
