"""The package's import contract (docs/layout.md): each layer imports only the layers above it, nothing imports in a
cycle, and exporting or profiling a model does not import Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mcq"
# layer of each top-level module or package of mcq; a module imports only from its own layer or lower ones
LAYERS = {
    "__init__": 0, "errors": 0, "io": 0, "viz": 0,
    "models": 1, "data": 1, "recipes": 1,
    "tasks": 2,
    "train": 3,
    "runtime": 4,
    "export": 5,
    "profile": 6, "analysis": 6, "experiments": 6, "apps": 6, "interop": 6,
    "cli": 7, "__main__": 7,
}
NO_LIGHTNING = ("mcq.export", "mcq.profile", "mcq.runtime", "mcq.tasks")  # and every module they import


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``mcq`` module ``path`` imports, at its top or inside a function (a lazy import is still a
    dependency); ``from mcq.x import y`` counts as ``mcq.x.y`` where that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mcq"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mcq":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top not in LAYERS:
        raise AssertionError(f"{module}: its package {top!r} has no layer; add it to LAYERS (and docs/layout.md)")
    return LAYERS[top]


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: imports(p) & set(MODULES) for m, p in MODULES.items()}


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
                  for m, deps in graph.items() for d in deps if layer(d) > layer(m))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_imports_only_layers_above_it():
    assert upward(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_contract_catches_what_it_should():
    """The checks fail on an upward import and on a cycle."""
    assert upward({"mcq.tasks.specs": {"mcq.train.module"}}) == [
        "mcq.tasks.specs (layer 2) imports mcq.train.module (layer 3)"]
    assert cycles({"mcq.a": {"mcq.b"}, "mcq.b": {"mcq.c"}, "mcq.c": {"mcq.a"}, "mcq.d": {"mcq.a"}}) == [
        ["mcq.a", "mcq.b", "mcq.c"]]
    with pytest.raises(AssertionError, match="mcq.newpkg.x: its package 'newpkg' has no layer"):
        layer("mcq.newpkg.x")


def test_no_private_name_is_imported_across_modules():
    private = [f"{m}: {node.module}.{a.name}" for m, p in MODULES.items() for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcq")
               for a in node.names if a.name.startswith("_")]
    assert private == []


def test_export_and_profile_do_not_import_lightning():
    """Importing every module of the packages that export, run and profile artifacts leaves Lightning unloaded."""
    names = sorted(m for m in MODULES if m.startswith(NO_LIGHTNING))
    code = (f"import importlib, sys\nfor m in {names!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert out.stdout.strip() == "[]"
