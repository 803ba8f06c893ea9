"""Manager side of an install: the wheels every host installs from.

For each host *target* (Python minor version, CPU architecture, glibc), build once and cache:
the agi_core wheel, the app wheel, a lock of their dependencies pinned for that target (with the
manager's own Dask stack versions, so workers match the manager), and a wheelhouse holding every
pinned wheel, so hosts without internet install offline. A GPU host (with the rapids bit) is a
target of its own, whose lock and wheelhouse add the app's ``gpu`` extra; the others' never hold it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.atomic import replacing
from ..kernels.kinds import kind
from ..kernels.shape import ExecutionShape
from ..settings.loading import read_toml
from .code_hash import agi_code_hash
from .source import AGI_DISTRIBUTION, BuildError, agi_source_dir

if TYPE_CHECKING:
    from ..app.env import AgiEnv

__all__ = ["AGI_DISTRIBUTION", "Artifacts", "ArtifactBuilder", "BuildError", "Target", "agi_code_hash", "agi_source_dir", "cpu_extras",
           "sha256_file", "uv_binary"]

# Packages Dask compares between client, scheduler and workers: pinned to the manager's versions.
MATCHED_PACKAGES = ("dask", "distributed", "cloudpickle", "msgpack", "tornado", "toolz", "numpy", "lz4", "pandas")
# Needed by the manager only (SSH client, installer, Slurm job submission): workers do not get them.
MANAGER_ONLY = ("asyncssh", "uv", "dask-jobqueue")
#: the app's extra that GPU hosts install when the rapids bit is enabled (numba-cuda, cudf-cu12, …)
GPU_EXTRA = "gpu"


@dataclass(frozen=True)
class Target:
    """What wheels a host can install: CPython minor version, architecture and glibc."""

    python: str  # "3.11"
    arch: str  # "x86_64"
    glibc: tuple[int, int] | None
    gpu: bool = False  # a GPU host with the rapids bit: the app's `gpu` extra too (its own lock and wheelhouse)

    @property
    def key(self) -> str:
        libc = f"glibc{self.glibc[0]}.{self.glibc[1]}" if self.glibc else "nolibc"
        return f"cp{self.python.replace('.', '')}-{self.arch}-{libc}" + ("-gpu" if self.gpu else "")

    def uv_platform(self) -> str:
        major, minor = self.glibc or (2, 17)
        return f"{self.arch}-manylinux_{major}_{min(max(minor, 17), 40)}"

    def pip_platforms(self) -> list[str]:
        major, minor = self.glibc or (2, 17)
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 16, -1)]
        return tags + [f"manylinux2014_{self.arch}", f"manylinux2010_{self.arch}", f"manylinux1_{self.arch}", f"linux_{self.arch}"]


@dataclass(frozen=True)
class Artifacts:
    """The files one target installs from, and the hashes that make up an install fingerprint."""

    wheelhouse: Path
    lock: Path
    agi_wheel: str
    app_wheel: str
    agi_hash: str
    app_hash: str
    deps_hash: str  # hash of the lock: the exact dependency versions
    files: dict[str, str] = field(default_factory=dict)  # wheel name -> sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def uv_binary() -> Path:
    """The manager's own uv (from the `uv` package), uploaded to hosts that lack one."""
    try:
        import uv

        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        import shutil

        found = shutil.which("uv")
        if found:
            return Path(found)
    raise BuildError("no uv on the manager", fix="pip install uv")


async def _run(*command: str, what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    process = await asyncio.create_subprocess_exec(*command, cwd=cwd, env={**os.environ, **(env or {})},
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = "\n".join((err or out).decode(errors="replace").strip().splitlines()[-15:])
        raise BuildError(f"{what} failed on the manager (exit {process.returncode}):\n{tail}",
                         fix="fix the cause above; the manager needs the package index (or a warm cache) to build a wheelhouse")
    return out.decode()


def cpu_extras(shape: ExecutionShape) -> tuple[str, ...]:
    """The app's optional-dependency extras that the CPU kernel kinds of ``shape`` need on every
    host (`KernelKind.extra`, e.g. ``numba``); the GPU kinds' go to GPU hosts only (`GPU_EXTRA`)."""
    return tuple(kind(name).extra for name in shape.kernels if kind(name).extra and not kind(name).gpu)


class ArtifactBuilder:
    """Builds and caches wheels, locks and wheelhouses under ``cache_dir``; one build per target."""

    def __init__(self, env: AgiEnv, cache_dir: Path, *, cython: bool = False, find_links: Sequence[str] = (),
                 extras: Sequence[str] = ()) -> None:
        self.env = env
        self.cache_dir = cache_dir
        self.cython = cython
        self.extras = tuple(extras)  # the app's extras every host gets: its CPU kernel kinds' (`cpu_extras`)
        self.find_links = [str(Path(link).expanduser()) for link in find_links]
        self._locks: dict[str, asyncio.Lock] = {}
        self._built: dict[str, Artifacts] = {}
        self.app_hash = env.code_hash()
        self.agi_hash = agi_code_hash()

    def requirements(self, target: Target | None = None) -> list[str]:
        """Dependencies of agi_core and the app (plus Cython and setuptools when kernels get
        compiled, plus the app's ``gpu`` extra for a GPU ``target``)."""
        agi = [req for req in read_toml(agi_source_dir() / "pyproject.toml")["project"].get("dependencies", [])
               if _requirement_name(req) not in MANAGER_ONLY]
        project = read_toml(self.env.project_dir / "pyproject.toml").get("project", {})
        app = project.get("dependencies", [])
        extra = ["cython>=3.0", "setuptools>=68"] if self.cython else []
        optional = project.get("optional-dependencies", {})
        gpu = optional.get(GPU_EXTRA, []) if target is not None and target.gpu else []
        kinds = [req for name in self.extras for req in optional.get(name, [])]
        return sorted({*agi, *app, *extra, *gpu, *kinds})

    def gpu_extra(self) -> list[str]:
        """The app's ``gpu`` extra (``[project.optional-dependencies] gpu``): what GPU hosts get."""
        return list(read_toml(self.env.project_dir / "pyproject.toml").get("project", {})
                    .get("optional-dependencies", {}).get(GPU_EXTRA, []))

    def constraints(self) -> list[str]:
        pins = []
        for name in MATCHED_PACKAGES:
            try:
                pins.append(f"{name}=={importlib.metadata.version(name)}")
            except importlib.metadata.PackageNotFoundError:
                pass
        return pins

    @staticmethod
    def lock_options(target: Target) -> list[str]:
        """``uv pip compile`` options for ``target``: a GPU target takes wheels only, as its
        wheelhouse does, so an unfit pin fails the lock, naming it, rather than reaching for an old
        release published as a stub that downloads from NVIDIA's index when built (cudf-cu12 24.10)."""
        return ["--no-build"] if target.gpu else []

    def inputs_hash(self, target: Target) -> str:
        """What the lock depends on: requirements, pins and target. Equal inputs give an equal lock."""
        text = "\n".join([target.key, *self.requirements(target), "--", *self.constraints(), "--", *self.find_links])
        return hashlib.sha256(text.encode()).hexdigest()

    async def build(self, target: Target) -> Artifacts:
        """The artifacts for ``target``, built on first request and shared by concurrent callers."""
        lock = self._locks.setdefault(target.key, asyncio.Lock())
        async with lock:
            if target.key not in self._built:
                self._built[target.key] = await self._build(target)
            return self._built[target.key]

    async def _build(self, target: Target) -> Artifacts:
        uv = str(uv_binary())
        wheels_dir = self.cache_dir / "wheels"
        agi_wheel = await self._wheel(uv, agi_source_dir(), wheels_dir / f"agi-{self.agi_hash[:16]}", "agi_core")
        app_wheel = await self._wheel(uv, self.env.project_dir, wheels_dir / f"{self.env.name}-{self.app_hash[:16]}", self.env.name)
        lock_path = self.cache_dir / "locks" / f"{self.inputs_hash(target)[:24]}.txt"
        if not lock_path.is_file():
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            requirements = lock_path.with_suffix(".in")
            constraints = lock_path.with_suffix(".constraints")
            requirements.write_text("\n".join(self.requirements(target)) + "\n")
            constraints.write_text("\n".join(self.constraints()) + "\n")
            links = [arg for link in self.find_links for arg in ("--find-links", link)]
            with replacing(lock_path) as tmp:
                await _run(uv, "pip", "compile", "-q", str(requirements), "-c", str(constraints), *links, *self.lock_options(target),
                           "--python-version", target.python, "--python-platform", target.uv_platform(), "--no-header",
                           "--no-annotate", "-o", str(tmp), what="locking the dependencies (uv pip compile)")
        wheelhouse = self.cache_dir / "wheelhouse" / target.key
        done = wheelhouse / f".complete-{sha256_file(lock_path)[:16]}"
        if not done.is_file():
            wheelhouse.mkdir(parents=True, exist_ok=True)
            platforms = [arg for tag in target.pip_platforms() for arg in ("--platform", tag)]
            abi = f"cp{target.python.replace('.', '')}"
            await _run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                       "--python-version", target.python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
                       *platforms, *[arg for link in self.find_links for arg in ("--find-links", link)],
                       "-d", str(wheelhouse), "-r", str(lock_path),
                       what="downloading the wheelhouse (pip download)")
            done.touch()
        for wheel in (agi_wheel, app_wheel):  # our own wheels sit beside the dependencies
            target_file = wheelhouse / wheel.name
            if not target_file.is_file() or sha256_file(target_file) != sha256_file(wheel):
                target_file.write_bytes(wheel.read_bytes())
        pinned = {line.split("==")[0].lower().replace("_", "-") for line in lock_path.read_text().splitlines() if "==" in line}
        files = {p.name: sha256_file(p) for p in wheelhouse.glob("*.whl") if _wheel_project(p.name) in pinned or p.name in (agi_wheel.name, app_wheel.name)}
        return Artifacts(wheelhouse, lock_path, agi_wheel.name, app_wheel.name, self.agi_hash, self.app_hash,
                         sha256_file(lock_path), files)

    async def _wheel(self, uv: str, project: Path, out: Path, label: str) -> Path:
        """The wheel of ``project`` in ``out``, built once: targets built at the same time (a GPU
        host's and a CPU host's) wait for one build, and another process's build is taken as is."""
        async with self._locks.setdefault(str(out), asyncio.Lock()):
            wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
            if not wheels:
                built = False
                try:
                    with replacing(out) as tmp:
                        await _run(uv, "build", "-q", "--wheel", "-o", str(tmp), str(project), what=f"building the {label} wheel (uv build)")
                        built = True
                except OSError:
                    if not built:
                        raise
                    # another process finished the same build first: same inputs, same wheel
                wheels = sorted(out.glob("*.whl"))
            return wheels[0]


def _wheel_project(filename: str) -> str:
    return filename.split("-")[0].lower().replace("_", "-")


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
