"""Dependencies run one way: checked on every test run so the layering stays true as code grows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "unlearnkit"


def test_import_linter_contracts_are_kept() -> None:
    """The layers (and the light serving path) of pyproject.toml's import-linter contracts."""
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def _cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(adjacency):
        if start in index:
            continue
        work = [(start, iter(sorted(adjacency[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adjacency.get(child, ())))))
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


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle() -> None:
    graph = grimp.build_graph("unlearnkit")
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(adjacency) == []


def _imports_in_functions(path: Path) -> list[tuple[int, int, str]]:
    """(function line, import line, imported name) of every import inside a function."""
    tree = ast.parse(path.read_text())
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                found.append((func.lineno, node.lineno, node.names[0].name))
            elif isinstance(node, ast.ImportFrom):
                found.append((func.lineno, node.lineno, node.module or "."))
    return found


def undeclared_deferred_imports(path: Path) -> list[str]:
    """Imports inside functions with no ``# deferred`` comment saying why.

    The comment may sit on the import's line or between the function's ``def`` and the import
    (one comment can cover a block); a module whose docstring-following lines carry
    ``# deferred imports:`` declares all its function-level imports at once.
    """
    lines = path.read_text().splitlines()
    if any(line.startswith("# deferred imports:") for line in lines):
        return []
    bad = []
    for func_line, import_line, name in _imports_in_functions(path):
        window = lines[func_line - 1 : import_line]
        if not any("# deferred" in line for line in window):
            bad.append(f"{path.relative_to(ROOT)}:{import_line} imports {name}")
    return bad


def test_undeclared_deferred_import_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import json\n    return json\n")
    assert undeclared_deferred_imports_for(module) == ["m.py:2 imports json"]
    module.write_text("def f():\n    # deferred: heavy\n    import json\n    return json\n")
    assert undeclared_deferred_imports_for(module) == []


def undeclared_deferred_imports_for(path: Path) -> list[str]:
    """The same check, with paths shown relative to the file's own folder (for the self-test)."""
    global ROOT
    saved, ROOT = ROOT, path.parent
    try:
        return undeclared_deferred_imports(path)
    finally:
        ROOT = saved


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_function_level_imports_say_why(path: Path) -> None:
    """Imports inside functions only defer an optional or heavy dependency, and say which."""
    assert undeclared_deferred_imports(path) == []


def test_architecture_doc_is_current() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "import_graph.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
