"""The house rules of the three packages, checked on their source: imports only point down, no two modules
import each other (lazily or not), and no module grows past one screenful of jobs (600 lines).

Read from the files with `ast`, never by importing them, so a lazy import inside a function counts as much as
one at the top: a cycle hidden in a function body is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("posix_shim", "enclave_libc", "ocall_bridge")  # front, trusted runtime, boundary + host: top to bottom
MAX_LINES = 600


def modules(root: Path = REPO) -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of the three packages that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod itself.
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            targets = subs if len(subs) == len(node.names) else [*subs, base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph(known: dict[str, Path]) -> dict[str, set[str]]:
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


KNOWN = modules()
EDGES = graph(KNOWN)


def test_imports_only_point_down() -> None:
    rank = {package: i for i, package in enumerate(LAYERS)}
    upward = sorted(f"{a} -> {b}" for a, targets in EDGES.items() for b in targets
                    if rank[b.split(".")[0]] < rank[a.split(".")[0]])
    assert upward == [], "imports that point up a layer: " + ", ".join(upward)


def test_no_two_modules_import_each_other() -> None:
    assert cycles(EDGES) == []


def test_no_module_is_over_600_lines() -> None:
    long = {name: n for name, path in KNOWN.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines (split them along a seam): {long}"


@pytest.mark.parametrize("files, expected", [
    ({"a/__init__.py": "", "a/x.py": "from . import y\n", "a/y.py": "def f():\n    from .x import g\n"},
     [["a.x", "a.y"]]),
    ({"a/__init__.py": "", "a/x.py": "from . import y\n", "a/y.py": "import json\n"}, []),
])
def test_the_cycle_check_sees_a_lazy_cycle(tmp_path: Path, files: dict[str, str],
                                           expected: list[list[str]]) -> None:
    """Negative control: a cycle closed by an import inside a function is found; a one-way import is not."""
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    known = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
             for p in sorted(tmp_path.rglob("*.py"))}
    assert cycles(graph(known)) == expected
