"""The remote half of environment shipping: what runs inside a Gateway's scheduler and workers.

Those processes run an image without agi_core or the app, so nothing here may import agi_core:
`env_shipping` has cloudpickle send this module *by value* (its code travels with the plugin),
and it imports only the standard library and distributed, which every Dask process has.

An environment is a folder per code hash under ``root``: ``wheels/`` (what the manager sent),
``site/`` (``uv pip install --target``, offline, no resolution: the lock is complete) and
``.agi-env.json`` once it is complete. A process *activates* it by putting ``site/`` first on
``sys.path``: the process keeps running, and agi_core and the app import from there. That needs
the same Python minor version as the wheels were built for (checked by `probe` and the manager
before anything is sent); packages the process had already imported (distributed, tornado) stay
the image's, which the version check requires to be the manager's anyway.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

__all__ = ["EnvironmentPlugin", "SchedulerEnvironmentPlugin", "activate", "env_folder", "has_plugin", "install", "probe"]

MARKER = ".agi-env.json"


def env_folder(root: str, key: str) -> Path:
    """The environment of code hash ``key`` under ``root`` (``~`` is the process's home)."""
    return Path(os.path.expanduser(root)) / key[:24]


def _uv() -> str | None:
    """The uv this process can run: on PATH, or the `uv` package of its own Python."""
    found = shutil.which("uv")
    if found:
        return found
    candidate = Path(sys.executable).parent / "uv"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    try:
        import uv  # type: ignore[import-not-found]

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


def probe(root: str = "", key: str = "") -> dict[str, Any]:
    """What this process offers an environment: its Python, platform, uv, and whether the
    environment ``key`` is there already (complete) under ``root``."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None  # "glibc 2.36"
    glibc = None
    if libc and libc.startswith("glibc "):
        major, _, minor = libc.split()[1].partition(".")
        glibc = [int(major), int(minor.split(".")[0] or 0)]
    present = bool(root and key) and (env_folder(root, key) / MARKER).is_file()
    return {"python": platform.python_version(), "python_minor": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "executable": sys.executable, "arch": platform.machine(), "glibc": glibc, "uv": _uv(),
            "host": platform.node(), "present": present}


def activate(folder: Path) -> None:
    """Put the environment's ``site/`` first on ``sys.path`` (once), and forget the package
    versions distributed cached before it was there."""
    site = str(folder / "site")
    if site not in sys.path:
        sys.path.insert(0, site)
    import importlib

    importlib.invalidate_caches()
    try:
        from distributed import versions

        versions._version_cached.cache_clear()  # type: ignore[attr-defined]
    except AttributeError:
        pass


async def install(root: str, key: str, files: dict[str, bytes], lock: str, wheels: list[str]) -> dict[str, Any]:
    """Install environment ``key`` unless it is complete already; activate it either way.

    Returns what happened (``installed`` or ``present``, seconds); raises `RuntimeError` naming
    what is missing (uv) or uv's own error. Concurrent installs of one key on one host (two
    workers of a pod, a scheduler beside its workers) wait for each other through a lock file.
    """
    start = time.perf_counter()
    folder = env_folder(root, key)
    if (folder / MARKER).is_file():
        activate(folder)
        return {"status": "present", "seconds": time.perf_counter() - start}
    uv = _uv()
    if uv is None:
        raise RuntimeError(f"no uv in this image (PATH={os.environ.get('PATH', '')}, python {sys.executable})")
    folder.mkdir(parents=True, exist_ok=True)
    import fcntl

    handle = await asyncio.to_thread(open, folder / ".lock", "w")
    with handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            if not (folder / MARKER).is_file():
                await _install_locked(uv, folder, files, lock, wheels)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    activate(folder)
    return {"status": "installed", "seconds": time.perf_counter() - start}


async def _install_locked(uv: str, folder: Path, files: dict[str, bytes], lock: str, wheels: list[str]) -> None:
    wheelhouse = folder / "wheels"
    wheelhouse.mkdir(exist_ok=True)
    for name, data in files.items():
        (wheelhouse / name).write_bytes(data)
    (folder / "lock.txt").write_text(lock)
    site = folder / "site"
    shutil.rmtree(site, ignore_errors=True)  # a half-done install of an earlier try
    command = [uv, "pip", "install", "-q", "--no-deps", "--no-index", "--find-links", str(wheelhouse), "--python", sys.executable,
               "--target", str(site), "-r", str(folder / "lock.txt"), *(str(wheelhouse / name) for name in wheels)]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "UV_LINK_MODE": "copy"}
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = "\n".join((err or out).decode(errors="replace").strip().splitlines()[-10:])
        raise RuntimeError(f"uv pip install failed (exit {process.returncode}): {tail}")
    shutil.rmtree(wheelhouse, ignore_errors=True)  # installed: the wheels are not needed any more
    (folder / MARKER).write_text(json.dumps({"installed_at": time.time(), "python": platform.python_version()}))


class EnvironmentPlugin(WorkerPlugin):
    """Installs (or finds) environment ``key`` on each worker and activates it, before the worker
    runs a task; workers that join later (a replacement, adaptive scaling) get it too."""

    def __init__(self, name: str, root: str, key: str, files: dict[str, bytes], lock: str, wheels: list[str]) -> None:
        self.name = name
        self.root, self.key, self.files, self.lock, self.wheels = root, key, files, lock, wheels

    async def setup(self, worker: Any) -> None:
        await install(self.root, self.key, self.files, self.lock, self.wheels)
        self.files = {}  # installed: a restarted worker process gets the plugin again from the scheduler


class SchedulerEnvironmentPlugin(SchedulerPlugin):
    """The same for the scheduler, which unpickles the run's task graph and must import agi_core."""

    def __init__(self, name: str, root: str, key: str, files: dict[str, bytes], lock: str, wheels: list[str]) -> None:
        self.name = name
        self.root, self.key, self.files, self.lock, self.wheels = root, key, files, lock, wheels

    async def start(self, scheduler: Any) -> None:
        await install(self.root, self.key, self.files, self.lock, self.wheels)
        self.files = {}  # installed: the scheduler need not keep the wheels in memory


def has_plugin(dask_scheduler: Any, name: str) -> bool:
    """Whether the scheduler runs environment plugin ``name`` already (and its workers get it):
    an unchanged environment is then not sent again."""
    return name in dask_scheduler.plugins and name in dask_scheduler.worker_plugins
