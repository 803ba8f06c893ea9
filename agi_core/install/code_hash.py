"""The agi_core code workers run, and its hash: what decides whether `agi install` re-installs a host.

Hosts get the whole agi_core wheel, but only part of it ever runs there. The hash covers exactly
that part: the *import closure* of `WORKER_ENTRIES` (the modules a worker, a pool slot, a Dask
scheduler or a host-side command starts from), found by reading the source, not by running it:

- every ``import`` / ``from … import`` statement of a module that names an ``agi_core`` module,
  at module level **or inside a function** (a worker may call any function of a module it has),
  relative imports resolved; ``from pkg import name`` follows ``pkg.name`` when that is a module;
- every parent package of a module in the closure (importing ``a.b.c`` runs ``a/__init__.py`` and
  ``a/b/__init__.py``);
- not the bodies of ``if TYPE_CHECKING:`` (never executed), and not imports by string
  (``importlib.import_module("agi_core…")``: the executor and backend registries, which workers
  never use; a worker module that imports by string must put its target in `WORKER_ENTRIES`).

So editing the command line, the web UI, the run package, pipelines, reports or a manager-side
backend leaves the hash, and every host's install, as it is; editing a module that workers import
(directly or not) changes it. Of ``pyproject.toml``, what goes into the wheel is hashed too: its
``[project]``, ``[build-system]`` and ``[tool.setuptools]`` tables (not the pytest or ruff options).
tests/test_code_hash.py imports `WORKER_ENTRIES` in a fresh interpreter and checks that every
agi_core module it loads is hashed, so the closure can only be too wide, never too narrow.

The closure and the hash are cached per source tree, keyed on every file's size and mtime: a call
costs one ``stat`` per file (about 2.5 ms for 170 files); reading and parsing the closure (about 55
files, 0.1 s) happens again only when a file changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import tomllib
from functools import lru_cache
from pathlib import Path

from ..base.errors import AgiError
from .source import agi_source_dir

__all__ = ["WORKER_ENTRIES", "agi_code_hash", "worker_modules"]

PACKAGE = "agi_core"

#: Where code on a worker host starts: what Dask pickles by reference and workers unpickle, what
#: pool slots and host-side commands run, and the names an app imports from ``agi_core`` (not
#: ``AGI`` or ``RunResult``: the manager's facade, which pulls in the run package).
WORKER_ENTRIES = (
    "agi_core.executors.worker",  # run_batch: a batch of partitions on a Dask worker (each run by partition_runner)
    "agi_core.executors.dask_watch",  # the worker plugin and the functions run on the scheduler and workers
    "agi_core.executors.slot_process",  # slot_main: the pool bit's slot processes
    "agi_core.executors.app_spawn",  # the spawn launcher whose children run in the app's interpreter
    "agi_core.gpus",  # worker_gpu_facts (Client.run), the GPU library probe
    # `agi_core.gpus` loads its modules by name on first use (a CPU run needs two of them): each is an entry
    "agi_core.gpus.model", "agi_core.gpus.names", "agi_core.gpus.owners", "agi_core.gpus.probe", "agi_core.gpus.libraries", "agi_core.gpus.facts",
    "agi_core.base.lifeline",  # the Dask preload of workers started by this machine
    "agi_core.install.cython_build",  # `python -m agi_core.install.cython_build` on each host
    "agi_core.install.warm",  # `python -m agi_core.install.warm` on each host (JIT kernel kinds)
    "agi_core.install.installed_hash",  # installed_agi_hash (client.run): a joining worker's code hash
    "agi_core.app",  # the app contract: `from agi_core import App, Partition, WorkContext`
    "agi_core.kernels.selection",  # an app's kernel tier (CPU, Cython, GPU)
    "agi_core.base.errors",  # `from agi_core import AgiError`
    "agi_core.base.modes",  # `from agi_core import Mode`
    "agi_core.app.env",  # `from agi_core import AgiEnv`
    "agi_core.plan",  # `from agi_core import WorkPlan`
    "agi_core.base.paths",  # `from agi_core.base.paths import default_share` (the examples)
)


def worker_modules(root: Path) -> dict[str, Path]:
    """The modules of ``root/agi_core`` that workers may import (dotted name -> file): the import
    closure of `WORKER_ENTRIES`, with parent packages. ``root`` is a source tree."""
    return dict(_closure(*_stamp(root)))


def agi_code_hash(root: Path | None = None) -> str:
    """The hash of the agi_core code workers run: ``pyproject.toml`` and every module of
    `worker_modules`. A change re-installs agi_core on every host; a change elsewhere does not.

    ``root`` is the source tree (default: `source.agi_source_dir`).
    """
    if root is None:
        root = agi_source_dir()
    return _hash(*_stamp(root))


def _stamp(root: Path) -> tuple[Path, tuple[tuple[str, int, int], ...]]:
    """The cache key of a source tree: each ``.py`` file (and pyproject.toml) with its size and mtime."""
    root = root.resolve()
    files = [root / "pyproject.toml", *(p for p in (root / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts)]
    stamps = []
    for path in files:
        stat = path.stat()
        stamps.append((str(path.relative_to(root)), stat.st_mtime_ns, stat.st_size))
    return root, tuple(sorted(stamps))


@lru_cache(maxsize=8)
def _hash(root: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256(_wheel_metadata(root / "pyproject.toml"))
    for _, path in _closure(root, stamp):
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _wheel_metadata(pyproject: Path) -> bytes:
    """What of ``pyproject.toml`` goes into the wheel: ``[project]``, ``[build-system]`` and
    ``[tool.setuptools]`` (not the pytest or ruff options), in a canonical form."""
    data = tomllib.loads(pyproject.read_text())
    kept = {"project": data.get("project"), "build-system": data.get("build-system"),
            "setuptools": data.get("tool", {}).get("setuptools")}
    return json.dumps(kept, sort_keys=True).encode()


@lru_cache(maxsize=8)
def _closure(root: Path, stamp: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, Path], ...]:
    """(``stamp`` is only the cache key: it changes when a file does.)"""
    modules = {_module_name(Path(rel)): root / rel for rel, _, _ in stamp if rel.endswith(".py")}
    seen: set[str] = set()
    todo = list(WORKER_ENTRIES)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in modules:
            raise AgiError(f"{name}, a module workers import, is not in {root / PACKAGE}",
                           fix="a worker module was moved or renamed: update WORKER_ENTRIES in agi_core/install/code_hash.py")
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imports(name, modules)
    return tuple(sorted((name, modules[name]) for name in seen))


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, modules: dict[str, Path]) -> set[str]:
    """The agi_core modules that module ``name`` imports anywhere but under ``if TYPE_CHECKING:``."""
    path = modules[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    named: set[str] = set()
    for node in _executed_imports(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
            continue
        if node.level:  # relative: level 1 is this module's package, 2 its parent, …
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        named.add(base)
        named |= {f"{base}.{alias.name}" for alias in node.names}
    found = set()
    for dotted in named:
        while dotted and dotted not in modules:  # `from pkg import function`: the module is pkg
            dotted = dotted.rpartition(".")[0]
        if dotted.split(".")[0] == PACKAGE:
            found.add(dotted)
    return found


def _executed_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += ast.iter_child_nodes(node)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))
