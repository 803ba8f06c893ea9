"""Which Python runs an app on this machine, so that its ``[project] dependencies`` are there.

Mode 0 runs in this process: `check_in_process` fails before any partition when one is missing. Pool
slots and local Dask workers run `app_python`: the manager's interpreter when it has every dependency;
else the venv `agi install` built for this host, when it fits; else an environment made with uv on first
use (agi_core's worker dependencies and the app's, the manager's Dask stack pinned; agi_core and the app's
``src/`` on its path through a ``.pth`` file: editable, and no build backend to fetch), then reused.
`spawn_context` / `using_executable` start multiprocessing children with that interpreter.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..base.errors import AgiError
from ..base.events import EventSink, Notice, ignore
from ..base.paths import cache_dir
from ..settings.loading import read_toml

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from ..settings import InstallSettings
    from .env import AgiEnv

__all__ = ["AppPython", "app_python", "check_in_process", "missing_requirements"]

ENV_SCHEMA = "agi.app-env.v2"  # v2: agi_core's editable metadata in the environment
MARKER = ".agi-app-env.json"  # written last into an environment made here: what it holds
_AGI_DIR = Path(__file__).resolve().parents[1]  # the agi_core package the manager runs


@dataclass(frozen=True)
class AppPython:
    """The interpreter that runs an app's pool slots and local Dask workers on this machine."""

    executable: Path
    source: Literal["manager", "installed", "cached"]
    reason: str


def _declared(project_dir: Path) -> list[Requirement]:
    from packaging.requirements import InvalidRequirement, Requirement  # imported on first need: ~25 ms

    pyproject = project_dir / "pyproject.toml"
    try:
        return [Requirement(r) for r in read_toml(pyproject).get("project", {}).get("dependencies", [])]
    except InvalidRequirement as exc:
        raise AgiError(f"{pyproject}: a dependency is not PEP 508 ({exc})", fix="write it like 'polars>=0.20'") from None


def _dist(name: str, path: list[str] | None = None) -> importlib.metadata.Distribution | None:  # None: sys.path
    return next(iter(importlib.metadata.distributions(name=name, path=sys.path if path is None else path)), None)


def _unmet(requirements: list[Requirement], path: list[str] | None = None) -> list[tuple[str, str]]:
    """(requirement, what is there instead) for each of ``requirements`` that ``path`` does not meet."""
    from packaging.requirements import Requirement

    unmet = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        dist = _dist(req.name, path)
        if dist is None or not req.specifier.contains(dist.version, prereleases=True):
            unmet.append((str(req), f"{dist.version} installed" if dist else "not installed"))
            continue
        for sub in map(Requirement, dist.requires or []) if req.extras else []:  # an extra's own needs, one level down
            if sub.marker and any(sub.marker.evaluate({"extra": e}) for e in req.extras) and not sub.marker.evaluate({"extra": ""}):
                there = _dist(sub.name, path)
                if there is None or not sub.specifier.contains(there.version, prereleases=True):
                    unmet.append((str(req), f"{dist.version} installed, without {sub.name}{sub.specifier}"))
                    break
    return unmet


def missing_requirements(project_dir: Path, *, site_packages: Path | None = None) -> list[str]:
    """The app's dependencies that this interpreter (or ``site_packages``) does not meet: markers evaluated, a
    version outside the specifier or an extra's unmet requirement counts. Reads metadata only (~2 ms)."""
    return [req for req, _ in _unmet(_declared(project_dir), None if site_packages is None else [str(site_packages)])]


def _install_here(requirements: list[str]) -> str:
    python, packages = shlex.quote(sys.executable), " ".join(shlex.quote(r) for r in requirements)
    return f"{python} -m pip install {packages}" if _dist("pip") else f"uv pip install --python {python} {packages}"


def _unmet_here(project_dir: Path) -> list[tuple[str, str]]:
    """The app's dependencies this interpreter does not meet (as `_unmet`); an empty answer is
    remembered between runs.

    The verdict is kept (positive ones only) under a key made of the app's pyproject.toml, this
    interpreter, ``sys.path``, and the modification times of its site-packages folders:
    installing, upgrading or removing a package changes its folder, hence the key. (Other folders
    on the path, such as the current one, change all the time and hold no installed packages.)
    A run then checks in well under a millisecond instead of parsing requirements.
    """
    digest = hashlib.sha256(f"{ENV_SCHEMA}\0{sys.executable}\0{sys.version}".encode())
    try:
        digest.update((project_dir / "pyproject.toml").read_bytes())
    except OSError:
        return _unmet(_declared(project_dir))  # the error for a missing pyproject comes from there
    for entry in sys.path:
        digest.update(f"\0{entry}".encode())
        if entry.endswith(("site-packages", "dist-packages")):
            try:
                digest.update(f"\0{os.stat(entry).st_mtime_ns}".encode())
            except OSError:
                continue
    verdict = cache_dir("checks", digest.hexdigest()[:32])
    if verdict.exists():
        return []
    if unmet := _unmet(_declared(project_dir)):
        return unmet
    try:
        verdict.parent.mkdir(parents=True, exist_ok=True)
        verdict.touch()
    except OSError:
        pass  # a read-only cache only costs the next run the full check
    return []


def check_in_process(env: AgiEnv) -> None:
    """Raise `AgiError` before any partition runs when this process lacks a dependency of the app (mode 0)."""
    if unmet := _unmet_here(env.project_dir):
        needs = ", ".join(f"{req} ({state})" for req, state in unmet)
        raise AgiError(f"app '{env.name}' needs {needs} in {sys.executable}, and mode 0 runs in this process",
                       fix=f"install it here: {_install_here([req for req, _ in unmet])} — or run with --mode p, "
                           "which uses the app's own environment (made with uv)")


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def _pins(names: tuple[str, ...]) -> list[str]:
    return [f"{name}=={dist.version}" for name in names if (dist := _dist(name))]


def _installed_problem(venv: Path, requirements: list[Requirement]) -> str | None:
    """Why the venv `agi install` built cannot run the app here (None: it can). Reads files, runs nothing."""
    from .. import __version__
    from ..install.artifacts import MATCHED_PACKAGES, agi_code_hash

    site = [str(_site_packages(venv))]  # absent when that venv runs another Python version than this one
    if not (venv / "bin" / "python").exists() or not Path(site[0]).is_dir():
        return f"no venv from `agi install` for Python {sys.version_info[0]}.{sys.version_info[1]} at {venv}"
    if unmet := _unmet(requirements, site):
        return f"the venv at {venv} lacks " + ", ".join(f"{req} ({state})" for req, state in unmet)
    for name, wanted in {"agi-orchestrator": __version__, **dict(p.split("==") for p in _pins(MATCHED_PACKAGES))}.items():
        there = _dist(name, site)
        if there is not None and there.version != wanted or there is None and name == "agi-orchestrator":
            return f"the venv at {venv} has {name} {there.version if there else '(none)'}, the manager {wanted}"
    try:
        if json.loads((venv / ".agi-install.json").read_text()).get("agi_hash") not in (None, agi_code_hash()):
            return f"the venv at {venv} holds older agi_core code (re-run `agi install`)"
    except (OSError, ValueError, AgiError):
        pass  # no fingerprint, or the manager does not run from a source tree: the version check stands
    return None


def app_python(env: AgiEnv, install: InstallSettings, *, on_event: EventSink | None = None) -> AppPython:
    """The interpreter for this app's pool slots and local Dask workers: a few ms, or seconds when it makes one
    (blocking: from async code, call it with ``asyncio.to_thread``)."""
    if not (unmet := _unmet_here(env.project_dir)):
        return AppPython(Path(sys.executable), "manager", "the manager's Python has every dependency of the app")
    requirements = _declared(env.project_dir)
    missing = ", ".join(req for req, _ in unmet)
    venv = Path(install.venv_path(env.name)).expanduser()
    if (problem := _installed_problem(venv, requirements)) is None:
        return AppPython(venv / "bin" / "python", "installed", f"the manager's Python lacks {missing}; the venv of `agi install` has it")
    python = _cached_env(env, requirements, missing, on_event or ignore)
    return AppPython(python, "cached", f"the manager's Python lacks {missing} and {problem}: an environment made with uv")


def _cached_env(env: AgiEnv, requirements: list[Requirement], missing: str, emit: EventSink) -> Path:
    """The environment made with uv for these inputs: reused when its marker is there, else built under a lock."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from .. import __version__
    from ..install.artifacts import MANAGER_ONLY, MATCHED_PACKAGES, agi_source_dir

    try:  # agi_core's dependencies, less the manager-only ones (SSH client, uv), as `agi install` does
        agi_needs = _declared(agi_source_dir())
    except AgiError:  # installed from a wheel: its metadata says the same
        agi_needs = [Requirement(r) for r in importlib.metadata.requires("agi-orchestrator") or [] if "extra ==" not in r]
    spec = {"schema": ENV_SCHEMA, "app": env.name, "project": str(env.project_dir), "requirements": sorted(map(str, requirements)),
            "agi_requirements": sorted(str(r) for r in agi_needs if canonicalize_name(r.name) not in MANAGER_ONLY),
            "constraints": _pins(MATCHED_PACKAGES), "python": sys.version, "agi_core": __version__, "agi_dir": str(_AGI_DIR)}
    root = cache_dir("envs")
    final = root / f"{env.name}-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]}"

    def ready() -> bool:
        return ((final / MARKER).is_file() and (final / "bin" / "python").exists() and (final / "agi-src" / "agi_core").is_dir()
                and not _unmet(requirements, [str(_site_packages(final))]))

    if ready():
        return final / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{final.name}.lock").open("w") as lock:  # fcntl: released on close, or when the process dies
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit(Notice(f"app '{env.name}': waiting for another run that is making its Python environment"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():  # another run made it while we waited
            return final / "bin" / "python"
        for stale in [*root.glob(f"{final.name}.tmp-*"), *([final] if final.exists() else [])]:
            shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted build, or broken since
        emit(Notice(f"app '{env.name}': making its Python environment with uv ({missing} missing here) in {final}"))
        start, tmp = time.perf_counter(), Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=root))
        try:
            _build(tmp, env, spec)
            (tmp / MARKER).write_text(json.dumps({**spec, "built_at": time.time(), "seconds": time.perf_counter() - start}, indent=1))
            os.rename(tmp, final)  # all or nothing: a failed or interrupted build leaves no environment
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        emit(Notice(f"app '{env.name}': Python environment ready in {time.perf_counter() - start:.1f} s"))
    return final / "bin" / "python"


def _build(venv: Path, env: AgiEnv, spec: dict[str, Any]) -> None:
    from ..install.artifacts import uv_binary

    def uv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(uv_binary()), *args], capture_output=True, text=True, check=False,
                              env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})

    if (made := uv("venv", "-q", "--relocatable", "--python", sys.executable, str(venv))).returncode:
        raise AgiError(f"uv venv failed: {made.stderr.strip()[-800:]}", fix=f"check that {sys.executable} runs")
    (venv / "agi-src").mkdir()
    (venv / "agi-src" / "agi_core").symlink_to(_AGI_DIR, target_is_directory=True)
    # relative to site-packages, so the environment survives its rename from the temporary folder
    (_site_packages(venv) / "_agi_app.pth").write_text(f"../../../agi-src\n{env.src_dir}\n")
    _editable_metadata(_site_packages(venv))
    (venv / "constraints.txt").write_text("\n".join(spec["constraints"]) + "\n")
    # byte-compiled once here, rather than by every worker that starts (or on each start, with PYTHONDONTWRITEBYTECODE)
    install = ("pip", "install", "-q", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
               "-c", str(venv / "constraints.txt"), *spec["agi_requirements"], *spec["requirements"])
    if (done := uv(*install, "--offline")).returncode:  # uv's cache first: no network, fast; the index when it lacks something
        done = uv(*install)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise AgiError(f"cannot make a Python environment for app '{env.name}' with {', '.join(spec['requirements'])} "
                       f"(uv pip install failed, from uv's cache and from the package index):\n{tail}",
                       fix=f"check them in {env.project_dir / 'pyproject.toml'} (with the manager's {', '.join(spec['constraints'])}), "
                           f"make the package index reachable, or install them here: {_install_here(spec['requirements'])}")


def _editable_metadata(site: Path) -> None:
    """agi_core's distribution metadata, as an editable install has it: Dask's and agi's version
    checks ask every worker for the installed version of agi-orchestrator."""
    from .. import __version__
    from ..install.artifacts import AGI_DISTRIBUTION

    info = site / f"{AGI_DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {AGI_DISTRIBUTION}\nVersion: {__version__}\n")
    (info / "INSTALLER").write_text("agi_core\n")
