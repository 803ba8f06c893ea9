"""The workers' code hash (`agi_core.install.code_hash`) covers exactly what workers import: editing
manager-side code (the CLI, the run package, the UI) re-installs no host, and `agi doctor` says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agi_core import AgiError
from agi_core.install.artifacts import agi_source_dir
from agi_core.install.code_hash import WORKER_ENTRIES, agi_code_hash, worker_modules

from .conftest import ROOT, TEST_APPS

#: packages only the manager imports: editing any of their modules must leave the hash alone
MANAGER_SIDE = ("cli", "run", "ui", "pipeline", "reports", "notebook")


def _copy_source(into: Path) -> Path:
    """A copy of agi_core's source tree (pyproject.toml and the package), to edit freely."""
    root = agi_source_dir()
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "pyproject.toml", into / "pyproject.toml")
    shutil.copytree(root / "agi_core", into / "agi_core", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return into


def _append(path: Path, text: str = "\n# an edit\n") -> None:
    with path.open("a") as handle:
        handle.write(text)


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    return _copy_source(tmp_path / "src")


def test_every_agi_core_module_a_worker_loads_is_hashed():
    """The worker entry modules, imported in a fresh interpreter, load only hashed modules: the
    closure read from the source can be wider than what runs, never narrower."""
    code = (f"import sys\nfor m in {list(WORKER_ENTRIES)!r}: __import__(m)\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m == 'agi_core' or m.startswith('agi_core.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(result.stdout.split())
    assert set(WORKER_ENTRIES) <= loaded  # the check sees the entry modules themselves
    assert loaded - set(worker_modules(ROOT)) == set()


def test_the_closure_holds_no_manager_side_package():
    hashed = worker_modules(ROOT)
    top_level = {name.split(".")[1] for name in hashed if name != "agi_core"}
    assert top_level & {*MANAGER_SIDE, "agi", "cluster", "snippets"} == set()
    # what it holds, beyond the entries: modules imported inside functions and parent packages
    assert {"agi_core.cache.store", "agi_core.provenance.lines", "agi_core.executors", "agi_core.install"} <= set(hashed)


def test_editing_the_cli_the_run_package_or_the_ui_leaves_the_hash(source_copy):
    before = agi_code_hash(source_copy)
    assert before == agi_code_hash(agi_source_dir())  # a faithful copy hashes the same
    edited = [path for name in MANAGER_SIDE for path in (source_copy / "agi_core" / name).rglob("*.py")]
    assert len(edited) > 20
    for path in edited:
        _append(path)
    _append(source_copy / "agi_core" / "agi.py")
    (source_copy / "agi_core" / "cli" / "new_command.py").write_text("from ..executors import worker\n")
    # pytest's and ruff's options are not the wheel's
    _append(source_copy / "pyproject.toml", '\n[tool.pytest.ini_options.extra]\nx = 1\n')
    assert agi_code_hash(source_copy) == before


@pytest.mark.parametrize("module", [
    "executors/worker.py",  # an entry: the Dask task that runs a batch of partitions
    "cache/packs.py",  # imported by an entry's import, inside a function (the cache store)
    "install/__init__.py",  # a parent package: `python -m agi_core.install.cython_build` runs it
])
def test_editing_a_module_workers_import_changes_the_hash(source_copy, module):
    before = agi_code_hash(source_copy)
    _append(source_copy / "agi_core" / module)
    assert agi_code_hash(source_copy) != before


def test_a_worker_module_starting_to_import_manager_code_brings_it_into_the_hash(source_copy):
    runner = source_copy / "agi_core" / "run" / "runner.py"
    before = agi_code_hash(source_copy)
    _append(source_copy / "agi_core" / "kernels" / "selection.py", "\n\ndef _later():\n    from ..run import runner\n")
    after = agi_code_hash(source_copy)
    assert after != before and "agi_core.run.runner" in worker_modules(source_copy)
    _append(runner)
    assert agi_code_hash(source_copy) != after


def test_the_wheels_dependencies_change_the_hash(source_copy):
    before = agi_code_hash(source_copy)
    pyproject = source_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1",', '"click>=8.2",'))
    assert agi_code_hash(source_copy) != before


def test_a_missing_worker_entry_is_named(source_copy):
    (source_copy / "agi_core" / "executors" / "dask_watch.py").unlink()
    with pytest.raises(AgiError, match="agi_core.executors.dask_watch, a module workers import, is not in") as info:
        agi_code_hash(source_copy)
    assert "WORKER_ENTRIES" in info.value.fix


# -- agi doctor after an edit --------------------------------------------------------------------

FINGERPRINT = textwrap.dedent("""
    import asyncio, json, sys
    from agi_core import AgiEnv
    from agi_core.base import paths
    from agi_core.install.capabilities import probe
    from agi_core.install.artifacts import ArtifactBuilder
    from agi_core.install.host import InstallContext, expected_fingerprint, host_target, remote_paths
    from agi_core.install.installer import hosts_of
    from agi_core.run import resolve
    from agi_core.ssh import open_session

    async def main():
        env = AgiEnv(app="toy", apps_path=sys.argv[1])
        request = resolve(env)
        ctx = InstallContext(env, request.cluster, request.run_mode, ArtifactBuilder(env, paths.cache_dir()))
        [host] = hosts_of(request.cluster)
        async with await open_session(host, request.cluster.ssh) as session:
            info = await probe(session, agi_root=remote_paths(request.cluster, env.name)["root"])
        print(json.dumps(expected_fingerprint(ctx, host_target(ctx, host, info))))

    asyncio.run(main())
""")


def test_doctor_reports_hosts_up_to_date_after_editing_the_cli_and_the_run_package(tmp_path):
    """A host installed from this source (its fingerprint, as `agi install` writes it) stays up to
    date for `agi doctor` when the CLI and the run package change, and is stale when a worker module does."""
    source = _copy_source(tmp_path / "src")
    apps = tmp_path / "apps"
    shutil.copytree(TEST_APPS / "toy_project", apps / "toy_project", ignore=shutil.ignore_patterns("__pycache__"))
    install_root = tmp_path / "agi"
    _append(apps / "toy_project" / "app_settings.toml", f'\n[cluster.install]\nroot = "{install_root}"\n')
    env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{apps / 'toy_project' / 'src'}", "COLUMNS": "200",
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:  # from the copy, as if it were the checkout
        return subprocess.run([sys.executable, *args], cwd=source, env=env, capture_output=True, text=True, timeout=120)

    made = run("-c", FINGERPRINT, str(apps))
    assert made.returncode == 0, made.stderr[-2000:]
    venv = install_root / "venvs" / "toy"
    (venv / "bin").mkdir(parents=True)
    (venv / ".agi-install.json").write_text(made.stdout.strip().splitlines()[-1])
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")  # the venv: this environment
    (venv / "bin" / "python").chmod(0o755)

    def venv_check() -> dict[str, object]:
        doctor = run("-m", "agi_core.cli", "doctor", "toy", "--apps-path", str(apps), "--json")
        [host] = json.loads(doctor.stdout)["hosts"]
        return next(check for check in host["checks"] if check["name"] == "venv")

    assert venv_check()["ok"] is True
    _append(source / "agi_core" / "cli" / "main.py")
    for path in (source / "agi_core" / "run").glob("*.py"):
        _append(path)
    check = venv_check()
    assert check["ok"] is True and "fingerprint current" in str(check["detail"])
    _append(source / "agi_core" / "executors" / "worker.py")
    check = venv_check()
    assert check["ok"] is False and "agi_hash changed" in str(check["detail"])


# -- what real workers load --------------------------------------------------------------------

LOADED_APP = '''
"""Each partition returns the agi_core modules its worker process has loaded."""
import sys

from pydantic import BaseModel

from agi_core import App, Partition


class LoadedArgs(BaseModel):
    pass


class Loaded(App):
    Args = LoadedArgs

    def plan(self, args):
        return [Partition(id=f"n{i}", payload=i) for i in range(2)]

    def work(self, part, ctx):
        return sorted(m for m in sys.modules if m == "agi_core" or m.startswith("agi_core."))

    def reduce(self, results, ctx):
        return sorted({m for loaded in results.values() for m in loaded})
'''


def test_real_dask_workers_load_only_hashed_modules(tmp_path, monkeypatch):
    """A run's Dask workers (processes started fresh), after running partitions and storing their
    results in the cache, have loaded no agi_core module outside the hash. (Pool slots fork this
    process when it has the app's packages, and otherwise start from `slot_process`, an entry.)"""
    import asyncio

    from agi_core import AGI, AgiEnv

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    project = tmp_path / "apps" / "loaded_project"
    (project / "src" / "loaded").mkdir(parents=True)
    (project / "src" / "loaded" / "__init__.py").write_text(LOADED_APP)
    (project / "pyproject.toml").write_text('[project]\nname = "loaded"\nversion = "0.0.1"\ndependencies = []\n')
    (tmp_path / "share").mkdir()
    env = AgiEnv(app="loaded", apps_path=tmp_path / "apps")
    result = asyncio.run(AGI.run(env, mode="d", cluster={"workers_data_path": str(tmp_path / "share"), "workers": {"127.0.0.1": 2}}))
    assert result.status == "ok"
    loaded = set(result.value)
    assert "agi_core.executors.worker" in loaded and "agi_core.run" not in loaded  # a worker process, not this one
    assert loaded - set(worker_modules(ROOT)) == set()
