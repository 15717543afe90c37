"""The import graph of every package in src/: no circles, and every arrow in the declared direction.

Imports are read with `ast` from the source tree (module level and inside functions alike: a function-local import
is still a dependency, it only runs later), so the test sees files another engineer adds or splits without a list
to keep up to date. Rules:
- kdmarl_teacher: its sub-packages in the order of `kdmarl_teacher.LAYERS` (a module imports its own sub-package
  and lower rows only);
- kdmarl_student: runs on robots, so never kdmarl_teacher, kdmarl_bringup nor torch;
- kdmarl_bringup: never kdmarl_teacher nor torch (a simulation or robot machine has no torch);
- every package: no import circle between its modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdmarl_teacher import LAYERS

SRC = Path(__file__).resolve().parents[2]  # src/
PACKAGES = sorted(p.parent.name for p in SRC.glob("*/package.xml")
                  if (p.parent / p.parent.name / "__init__.py").is_file())  # python packages (not kdmarl_msgs)
FORBIDDEN = {  # package -> top-level modules it must never import
    "kdmarl_student": {"kdmarl_teacher", "kdmarl_bringup", "torch"},
    "kdmarl_bringup": {"kdmarl_teacher", "torch"},
}


def modules(package: str) -> dict[str, Path]:
    """Every module of `package` found by walking src/<package>/<package>/: dotted name -> file."""
    root = SRC / package / package
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, anywhere in it. `from a import b` names
    the module a.b when that is a module of the package, else a; relative imports are resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in known else base), node.lineno


def graph(package: str) -> dict[str, list[tuple[str, int]]]:
    """module -> [(module of the same package it imports, line)]."""
    mods = modules(package)
    known = set(mods)
    return {m: [(t, line) for t, line in imported(m, p, known) if t in known and t != m] for m, p in mods.items()}


def find_cycle(edges: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    """One import circle (a list of modules, first == last) or None: depth-first search with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t, _ in edges.get(m, []):
            if state.get(t) == 1:
                return [*path[path.index(t):], t]
            if t not in state and (found := visit(t)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def rank(module: str) -> tuple[int, str] | None:
    """kdmarl_teacher.<sub>... -> (row of <sub> in LAYERS, <sub>); the package itself has no rank."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for row, names in enumerate(LAYERS):
        if parts[1] in names:
            return row, parts[1]
    raise AssertionError(f"{module}: sub-package {parts[1]!r} is in no row of kdmarl_teacher.LAYERS")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle(package: str) -> None:
    cycle = find_cycle(graph(package))
    assert cycle is None, f"{package}: import circle {' -> '.join(cycle)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_forbidden_package(package: str) -> None:
    bad = [f"{modules(package)[m].relative_to(SRC)}:{line} imports {t}"
           for m, p in modules(package).items() for t, line in imported(m, p, set())
           if t.split(".")[0] in FORBIDDEN.get(package, set())]
    assert not bad, "\n".join(bad)


def test_teacher_imports_point_down_the_layers() -> None:
    against = []
    for m, targets in graph("kdmarl_teacher").items():
        mine = rank(m)
        for t, line in targets:
            theirs = rank(t)
            if mine is None or theirs is None or theirs[1] == mine[1]:
                continue
            if theirs[0] >= mine[0]:
                against.append(f"{modules('kdmarl_teacher')[m].relative_to(SRC)}:{line}: {m} ({mine[1]}) imports "
                               f"{t} ({theirs[1]})")
    assert not against, "imports against kdmarl_teacher.LAYERS:\n" + "\n".join(against)


def test_the_checker_sees_circles_and_upward_imports(tmp_path: Path) -> None:
    """The checker itself on made-up graphs: it must flag what it exists to flag."""
    assert find_cycle({"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": [("b", 1)], "b": [], "c": [("a", 1)]}) is None
    assert rank("kdmarl_teacher.core.networks")[0] < rank("kdmarl_teacher.algos.mappo")[0]
    assert rank("kdmarl_teacher.export.bundle")[0] == rank("kdmarl_teacher.reports.common")[0]
    src = tmp_path / "pkg" / "sub.py"
    src.parent.mkdir()
    src.write_text("def f():\n    from . import other\n    import torch\n")
    assert set(imported("pkg.sub", src, {"pkg.other"})) == {("pkg.other", 2), ("torch", 3)}
