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
    assert "agi_core.base.errors" in _imported(PACKAGE / "run" / "request.py")



def import_graph(root: Path, package: str = "agi_core") -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports when it runs: every ``import`` and ``from``,
    at module level or inside a function (relative ones resolved; ``from pkg import name`` is the
    module ``pkg.name`` when there is one, else ``pkg``), less those under ``if TYPE_CHECKING:``,
    which never run. A module's implicit import of its parent packages is not an edge."""
    files = {}
    for path in root.rglob("*.py"):
        if "__pycache__" not in path.parts:
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        tree = ast.parse(path.read_text())
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for statement in block.body for node in ast.walk(statement)}
        names: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
                names |= {f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source for alias in node.names}
        graph[module] = {found for name in names if (found := known(name)) and found != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the modules around it (the first one again at the end)."""
    cycles, state, stack = [], dict.fromkeys(graph, 0), []  # 0: not seen, 1: on the stack, 2: done

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target):], target])
            elif state.get(target) == 0:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module)
    return cycles


def test_no_import_cycle_among_agi_core_modules():
    assert ["  ->  ".join(cycle) for cycle in import_cycles(import_graph(PACKAGE))] == []


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path):
    # it must be able to fail: a -> b at module level, b -> a inside a function, c -> a only for type checkers
    package = tmp_path / "agi_core"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub.b import f\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\nfrom . import sub\n")
    graph = import_graph(package)
    assert graph["agi_core.sub.b"] == {"agi_core.a"} and graph["agi_core.c"] == {"agi_core.sub"}
    assert import_cycles(graph) == [["agi_core.a", "agi_core.sub.b", "agi_core.a"]]


#: the longest a module may grow before it is split by what its parts do (docs/architecture.md)
MAX_MODULE_LINES = 300


def test_every_module_stays_within_300_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if "__pycache__" not in path.parts and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_bottom_layer_imports_nothing_above_it():
    # base/ is what every layer uses (errors, events, modes, hosts, paths, …): one import of a layer
    # above it would make every layer depend on that one
    graph = import_graph(PACKAGE)
    upward = {module: sorted(target for target in targets if not target.startswith("agi_core.base"))
              for module, targets in graph.items() if module.startswith("agi_core.base.")}
    assert {module: targets for module, targets in upward.items() if targets} == {}
