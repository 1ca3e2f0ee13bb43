"""The import direction of the README's architecture section, checked on the source (AST).

    tasks       → none of the other packages
    tasksets    → tasks, learned_opt (the shared inner loop and ``minimize``)
    outer_train → tasks, learned_opt, tasksets (normalization)
    eval        → all
    learned_opt → none, except lazily (inside a function) in its command-line modules

Imports at module level (including inside ``if``/``try`` at module level) are checked for every
package; imports inside functions are checked too, except the command-line dispatch of
``learned_opt`` (``cli.py``, ``__main__.py``), which may reach the other packages lazily.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("learned_opt", "tasks", "tasksets", "outer_train", "eval")
ALLOWED = {
    "tasks": set(),
    "tasksets": {"tasks", "learned_opt"},
    "outer_train": {"tasks", "learned_opt", "tasksets"},
    "eval": {"tasks", "learned_opt", "tasksets", "outer_train"},
    "learned_opt": set(),
}
LAZY_ALLOWED = {"learned_opt/cli.py": {"tasks", "tasksets", "outer_train", "eval"},
                "learned_opt/__main__.py": {"tasks", "tasksets", "outer_train", "eval"}}


def _imports(tree: ast.AST):
    """(top-level package imported, line, inside a function?) for every absolute import."""
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], child.lineno, in_function
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module.split(".")[0], child.lineno, in_function
            yield from visit(child, inner)
    yield from visit(tree, False)


def _violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for top, line, lazy in _imports(tree):
            if top not in PACKAGES or top == package:
                continue
            if top in ALLOWED[package] or (lazy and top in LAZY_ALLOWED.get(rel, set())):
                continue
            out.append(f"{rel}:{line} imports {top}" + (" (inside a function)" if lazy else ""))
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_flow_one_way(package):
    assert _violations(package) == []


def test_the_checker_sees_imports():
    tree = ast.parse("import tasks.base\nfrom eval import runner\ndef f():\n    from outer_train import x\n")
    assert list(_imports(tree)) == [("tasks", 1, False), ("eval", 2, False), ("outer_train", 4, True)]
