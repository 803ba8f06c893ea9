"""Which Python runs an app: the manager's, the venv `agi install` built, or one made with uv.

Real environments, no mocks. The test app `needsdep` declares `agi_testdep`, a package the test
venv does not have: the tests build it as a wheel and point uv at it with UV_FIND_LINKS, so the
environments are made offline from uv's cache (the first run on a machine with an empty cache
fetches agi_core's own dependencies from the package index once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import multiprocessing.spawn
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agi_core import AgiEnv, AgiError
from agi_core.app.interpreter import (
    MARKER,
    AppPython,
    app_python,
    check_in_process,
    missing_requirements,
)
from agi_core.executors.app_spawn import spawn_context
from agi_core.install.artifacts import uv_binary
from agi_core.settings import InstallSettings

from .conftest import TEST_APPS

DEP = "agi_testdep>=1.0"


def _wheel(folder: Path, name: str = "agi_testdep", version: str = "1.0.0") -> Path:
    """A pure-Python wheel: `import agi_testdep; agi_testdep.VALUE == 42`."""
    files = {f"{name}/__init__.py": f"VALUE = 42\n__version__ = {version!r}\n".encode(),
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in files.items()]
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join([*record, f"{name}-{version}.dist-info/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private agi cache (XDG_CACHE_HOME), uv's real cache, and the test wheel on UV_FIND_LINKS."""
    uv_cache = subprocess.run([str(uv_binary()), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    wheels = tmp_path_factory.mktemp("wheels")
    _wheel(wheels)
    xdg = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(xdg))
        patch.setenv("UV_CACHE_DIR", uv_cache)
        patch.setenv("UV_FIND_LINKS", str(wheels))
        yield xdg / "agi_core" / "envs"


@pytest.fixture(scope="module")
def needsdep() -> AgiEnv:
    return AgiEnv(app="needsdep", apps_path=TEST_APPS)


@pytest.fixture(scope="module")
def no_install(tmp_path_factory: pytest.TempPathFactory) -> InstallSettings:
    return InstallSettings(root=str(tmp_path_factory.mktemp("agi-root")))  # no venv from `agi install` there


@pytest.fixture(scope="module")
def built(cache: Path, needsdep: AgiEnv, no_install: InstallSettings) -> tuple[list[AppPython], list[str], float]:
    """The environment made on first use, by two runs at once (one builds, the other waits for it)."""
    events: list[str] = []
    results: list[AppPython] = []

    def one() -> None:
        results.append(app_python(needsdep, no_install, on_event=lambda event: events.append(str(getattr(event, "text", event)))))

    start = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, events, time.perf_counter() - start


def test_missing_requirements_finds_what_this_interpreter_lacks(needsdep: AgiEnv, tmp_path: Path) -> None:
    assert missing_requirements(needsdep.project_dir) == [DEP]
    assert missing_requirements(TEST_APPS / "toy_project") == []
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\ndependencies = ["pydantic>=999", "click", "Nope-Pkg; python_version < \'3\'", "pydantic[email]"]\n')
    # too old a version, and an extra whose own requirement (email-validator) is absent, count; a marker that is false does not
    assert missing_requirements(project) == ["pydantic>=999", "pydantic[email]"]
    start = time.perf_counter()
    for _ in range(20):
        missing_requirements(needsdep.project_dir)
    assert (time.perf_counter() - start) / 20 < 0.02  # about 2 ms here; called on every run


def test_mode_0_fails_before_any_partition_naming_the_package_and_the_fix(needsdep: AgiEnv, toy_env: AgiEnv) -> None:
    with pytest.raises(AgiError) as caught:
        check_in_process(needsdep)
    assert f"needs {DEP} (not installed) in {sys.executable}" in caught.value.message
    assert "mode 0 runs in this process" in caught.value.message
    fix = caught.value.fix or ""
    assert f"-m pip install '{DEP}'" in fix and "--mode p" in fix
    check_in_process(toy_env)  # nothing missing: no error


def test_manager_python_when_nothing_is_missing(toy_env: AgiEnv, no_install: InstallSettings) -> None:
    found = app_python(toy_env, no_install)
    assert (found.executable, found.source) == (Path(sys.executable), "manager")


def test_environment_made_once_and_reused(built: tuple[list[AppPython], list[str], float], cache: Path, needsdep: AgiEnv,
                                          no_install: InstallSettings) -> None:
    results, events, seconds = built
    assert {r.source for r in results} == {"cached"} and results[0].executable == results[1].executable
    python = results[0].executable
    assert python.parent.parent.parent == cache and "agi_testdep" in results[0].reason
    assert sum("making its Python environment with uv" in text for text in events) == 1  # built once, not twice
    assert any("waiting for another run" in text for text in events)  # the other run waited on the lock
    assert not list(cache.glob("*.tmp-*"))
    marker = python.parent.parent / MARKER
    stamp = marker.stat().st_mtime_ns
    start = time.perf_counter()
    again = app_python(needsdep, no_install)
    reuse = time.perf_counter() - start
    assert again == results[0] and marker.stat().st_mtime_ns == stamp
    assert reuse < 0.5, f"reuse took {reuse:.3f} s (first build {seconds:.1f} s)"


def test_environment_runs_agi_core_and_the_dependency(built: tuple[list[AppPython], list[str], float]) -> None:
    import dask

    python = built[0][0].executable
    code = ("import json, agi_core, agi_testdep, dask, distributed, needsdep; "
            "print(json.dumps([agi_core.__file__, agi_testdep.VALUE, dask.__version__, needsdep.__file__]))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    agi_file, value, dask_version, app_file = json.loads(done.stdout)
    assert Path(agi_file).resolve() == Path(__file__).resolve().parent.parent / "agi_core" / "__init__.py"  # the source, editable
    assert Path(app_file).resolve().is_relative_to(TEST_APPS / "needsdep_project" / "src")
    assert (value, dask_version) == (42, dask.__version__)  # the manager's Dask stack


def test_a_failed_build_raises_and_leaves_nothing(cache: Path, tmp_path: Path, no_install: InstallSettings) -> None:
    apps = tmp_path / "apps"
    shutil.copytree(TEST_APPS / "needsdep_project", apps / "needsdep_project", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = apps / "needsdep_project" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(DEP, "agi_testdep>=99"))
    before = set(cache.iterdir()) if cache.is_dir() else set()
    with pytest.raises(AgiError) as caught:
        app_python(AgiEnv(app="needsdep", apps_path=apps), no_install)
    assert "agi_testdep>=99" in caught.value.message and str(pyproject) in (caught.value.fix or "")
    left = {p for p in set(cache.iterdir()) - before if not p.name.endswith(".lock")}
    assert left == set()


def test_venv_of_agi_install_is_used_when_it_fits(built: tuple[list[AppPython], list[str], float], needsdep: AgiEnv,
                                                 tmp_path: Path) -> None:
    """A venv like `agi install` makes (agi_core's wheel, the dependencies, a fingerprint) is preferred; a stale one is not."""
    from agi_core.install.artifacts import agi_code_hash, agi_source_dir

    uv = str(uv_binary())
    venv = tmp_path / "venvs" / "needsdep"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
                    str(agi_source_dir())], check=True, capture_output=True)
    cached = built[0][0].executable.parent.parent
    made = json.loads((cached / MARKER).read_text())  # agi_core's worker dependencies, as `agi install` puts them
    target = ["--offline", "--python", str(venv / "bin" / "python")]
    subprocess.run([uv, "pip", "install", "-q", *target, "--no-deps", *wheels.glob("*.whl")], check=True)
    subprocess.run([uv, "pip", "install", "-q", *target, "-c", str(cached / "constraints.txt"), *made["agi_requirements"], DEP], check=True)
    install = InstallSettings(root=str(tmp_path))
    fingerprint = venv / ".agi-install.json"
    fingerprint.write_text(json.dumps({"agi_hash": agi_code_hash()}))
    found = app_python(needsdep, install)
    assert (found.executable, found.source) == (venv / "bin" / "python", "installed")
    fingerprint.write_text(json.dumps({"agi_hash": "older"}))
    stale = app_python(needsdep, install)
    assert stale.source == "cached" and "older agi_core code" in stale.reason


def test_spawn_context_runs_the_app_partition_with_the_other_interpreter(built: tuple[list[AppPython], list[str], float]) -> None:
    python = built[0][0].executable
    executable, prepare = multiprocessing.spawn.get_executable(), multiprocessing.spawn.get_preparation_data
    context = spawn_context(python)
    parent, child = context.Pipe()
    code = ("import sys\nfrom agi_core import AgiEnv\nenv = AgiEnv(app='needsdep', apps_path=apps)\napp = env.app_class()\n"
            "part = app.plan(app.Args())[1]\nconn.send((sys.executable, app.work(part, None)))\n")
    process = context.Process(target=exec, args=(code, {"conn": child, "apps": TEST_APPS}))
    process.start()
    child.close()
    assert parent.poll(60)
    ran_with, result = parent.recv()
    process.join(10)
    assert process.exitcode == 0
    assert ran_with == str(python) and result["value"] == 43 and result["python"] == str(python)
    # nothing process-wide changed: the default spawn context still starts the manager's Python
    assert multiprocessing.spawn.get_executable() == executable and multiprocessing.spawn.get_preparation_data is prepare


def _run(env: AgiEnv, share: Path, root: str, mode: str) -> object:
    import asyncio

    from agi_core import AGI

    cluster = {"workers_data_path": str(share), "install": {"root": root}, "workers": {"127.0.0.1": 2}}
    return asyncio.run(AGI.run(env, mode=mode, n=4, cluster=cluster))


def test_run_mode_0_stops_before_anything_and_the_pool_runs_in_the_app_environment(
        built: tuple[list[AppPython], list[str], float], needsdep: AgiEnv, no_install: InstallSettings, share: Path) -> None:
    """The defect: an app's declared dependency is there for its local runs, or the error says where it must go."""
    with pytest.raises(AgiError, match="agi_testdep") as info:
        _run(needsdep, share, no_install.root, "0")
    assert "--mode p" in (info.value.fix or "")
    assert not list(share.iterdir())  # nothing ran, no record
    result = _run(needsdep, share, no_install.root, "p")
    assert result.value == 4 * 42 + 6  # type: ignore[attr-defined]
    pythons = {r["python"] for r in result.results.values()}  # type: ignore[attr-defined]
    assert pythons == {str(built[0][0].executable)} and sys.executable not in pythons


def test_local_cluster_workers_run_in_the_app_environment(built: tuple[list[AppPython], list[str], float], needsdep: AgiEnv,
                                                          no_install: InstallSettings, share: Path) -> None:
    """Mode d on this machine: workers are launched with the app's Python instead of in-process ones."""
    result = _run(needsdep, share, no_install.root, "d")
    assert result.value == 4 * 42 + 6  # type: ignore[attr-defined]
    assert {r["python"] for r in result.results.values()} == {str(built[0][0].executable)}  # type: ignore[attr-defined]


def test_the_manager_check_is_remembered_until_the_app_or_the_interpreter_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                   apps_copy: Path) -> None:
    from agi_core.app.interpreter import _unmet_here

    def _manager_meets_all(project: Path) -> bool:
        return not _unmet_here(project)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = apps_copy / "toy_project"
    assert _manager_meets_all(project)
    assert len(list((tmp_path / "cache" / "agi_core" / "checks").iterdir())) == 1  # the verdict, kept
    assert _manager_meets_all(project)
    text = (project / "pyproject.toml").read_text().replace("dependencies = []", 'dependencies = ["agi_testdep>=1.0"]')
    (project / "pyproject.toml").write_text(text)
    assert not _manager_meets_all(project)  # a new dependency is a new key: checked again, and missing
    monkeypatch.syspath_prepend(str(tmp_path))  # another interpreter setup (sys.path) is another key too
    assert not _manager_meets_all(project)
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    (project / "pyproject.toml").write_text(text.replace('["agi_testdep>=1.0"]', "[]"))
    checks = tmp_path / "cache" / "agi_core" / "checks"
    assert _manager_meets_all(project) and len(list(checks.iterdir())) == 2
    os.utime(site, ns=(1, 1))  # a package installed or removed there: the verdict is taken again
    assert _manager_meets_all(project) and len(list(checks.iterdir())) == 3
