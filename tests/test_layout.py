"""The package layout keeps what issue 20 made true: no import circles between hpckit's modules (also not
through imports inside functions), and input formats registered like engines (one file each)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import hpckit

PACKAGE = Path(hpckit.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """hpckit modules ``path`` imports anywhere in its body, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                    out.append(sorted(component))
    return out


def test_no_import_circles():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, name, set(files)) for name, path in files.items()}
    assert _circles(graph) == []


def test_circle_finder_finds_a_circle():
    """The check above could fail: a -> b -> c -> a is found, a lone edge is not."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_formats_registered_one_file_each():
    from hpckit.events.formats import FORMATS, OPTIONS, file_format

    assert list(FORMATS) == ["TTree", "RNTuple", "Parquet"]
    assert OPTIONS == ("root", "parquet")
    for fmt in FORMATS.values():  # each format's reader lives in its own module of the package
        assert fmt.tree_class.__module__ == f"hpckit.events.formats.{fmt.name.lower()}"
    assert file_format("x/events.parquet").name == "Parquet"
    assert file_format("x/events.root") is None and file_format("x/events", "parquet").name == "Parquet"


@pytest.mark.parametrize("name", ["hpckit.events.formats.ttree", "hpckit.deploy.site", "hpckit.launch.session"])
def test_modules_import_first_in_a_fresh_interpreter(name):
    """Each module imports on its own, first (an import circle held together by import order breaks here)."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
