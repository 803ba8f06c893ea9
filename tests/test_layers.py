"""Imports point one way (docs/architecture.md): no module outside the manager-only packages imports
one of them, so workers never load them and editing them re-installs no host (`install/code_hash.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agi_core"
#: Sub-packages of agi_core that only the manager uses: the command line, the web UI, pipelines,
#: reports and the notebook display.
MANAGER_ONLY_PACKAGES = ("cli", "ui", "pipeline", "reports", "notebook")


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, as a dotted name under agi_core (relative imports resolved)."""
    module = ["agi_core", *path.relative_to(PACKAGE).with_suffix("").parts]
    if module[-1] == "__init__":
        module = module[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module[: len(module) - node.level + (path.name == "__init__.py")]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("agi_core")}


def test_worker_side_modules_never_import_manager_only_packages():
    manager_only = tuple(f"agi_core.{name}" for name in MANAGER_ONLY_PACKAGES)
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if "__pycache__" in parts or parts[0] in MANAGER_ONLY_PACKAGES:
            continue
        for name in _imported(path):
            if name == manager_only or any(name == p or name.startswith(p + ".") for p in manager_only):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_the_import_scan_resolves_relative_imports():
    # the check above must be able to fail: it sees `from .output import console` in cli/main.py
    # and `from ..errors import AgiError` in run/request.py as the modules they name
    assert "agi_core.cli.output" in _imported(PACKAGE / "cli" / "main.py")
    assert "agi_core.errors" in _imported(PACKAGE / "run" / "request.py")

