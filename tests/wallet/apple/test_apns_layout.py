"""The APNs client's modules stay small and import one way: client → pool → connection → results
(tls beside them, used by the client), with every import at the top of its module."""

from __future__ import annotations

import ast
from pathlib import Path

import app.wallet.apple.apns as apns_package

PACKAGE = "app.wallet.apple.apns"
# The package's own modules each may import.
ALLOWED = {
    "client": {"pool", "tls", "results"},
    "pool": {"connection", "results"},
    "connection": {"results"},
    "tls": {"results"},
    "results": set(),
}


def _modules() -> dict[str, Path]:
    root = Path(apns_package.__file__).parent
    return {path.stem: path for path in sorted(root.glob("*.py")) if path.stem != "__init__"}


def _package_imports(tree: ast.Module) -> set[str]:
    """The package's modules this module imports (``__init__`` for the package itself,
    which would import the client back)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.append("." if node.level else node.module or "")
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    found: set[str] = set()
    for name in names:
        if name == "." or name == PACKAGE:
            found.add("__init__" if name == PACKAGE else "relative import")
        elif name.startswith(PACKAGE + "."):
            found.add(name.removeprefix(PACKAGE + ".").split(".")[0])
    return found


def test_every_module_is_known_and_under_500_lines() -> None:
    modules = _modules()
    assert set(modules) == set(ALLOWED)
    for name, path in modules.items():
        lines = len(path.read_text().splitlines())
        assert lines <= 500, f"{name}.py has {lines} lines"


def test_imports_point_down_and_sit_at_the_top() -> None:
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        assert _package_imports(tree) <= ALLOWED[name], name
        top_level = {id(node) for node in tree.body}
        nested = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top_level
        ]
        assert nested == [], f"{name}.py imports inside a function or block at lines {nested}"


def test_the_names_callers_import_from_the_package_are_its_public_names() -> None:
    """Every name the app, tests and benchmarks import from the package is in ``__all__``,
    and every name in ``__all__`` is there."""
    root = Path(__file__).resolve().parents[3]
    imported: set[str] = set()
    for folder in ("app", "tests", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
                    imported.update(alias.name for alias in node.names)
    assert {"APNsClient", "Outcome", "PushResult"} <= imported  # the callers were found
    assert imported <= set(apns_package.__all__)
    for name in apns_package.__all__:
        assert hasattr(apns_package, name), name
