"""The house stays walkable (README.md, Layout): no project import hidden in a function, no module over ~500
lines, no private name taken from another module. The floors themselves are checked by `lint-imports`."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "actors", "core")
MOST_LINES = 500


def modules() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]


def imports(tree: ast.Module) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import with whether it sits at the module's top level."""
    top = {id(node) for node in tree.body}
    return [(node, id(node) in top) for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def is_ours(node: ast.Import | ast.ImportFrom) -> bool:
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
    return any(name.split(".")[0] in PACKAGES for name in names)


def test_no_module_imports_one_of_ours_inside_a_function_or_a_condition():
    hidden = [f"{path.relative_to(REPO)}:{node.lineno}" for path in modules()
              for node, at_top in imports(ast.parse(path.read_text())) if not at_top and is_ours(node)]
    assert hidden == []


def test_no_module_is_over_about_five_hundred_lines():
    long = {str(path.relative_to(REPO)): count for path in modules()
            if (count := len(path.read_text().splitlines())) > MOST_LINES}
    assert long == {}


def test_no_module_takes_a_private_name_from_another():
    taken = [f"{path.relative_to(REPO)}:{node.lineno} {alias.name}" for path in modules()
             for node, _ in imports(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and is_ours(node)
             for alias in node.names if alias.name.startswith("_")]
    assert taken == []
