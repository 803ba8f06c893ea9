"""Files a partition reads without declaring them: noted while `App.work` runs, for the record.

The cache sees a partition's declared inputs (``Partition(inputs=...)``), not what ``work()`` opens
on its own. While a partition runs with the cache on, an audit hook (`sys.addaudithook`) notes
each file the running thread opens for reading through Python (``open``, ``pathlib``, ``os.open``,
and the libraries that use them: numpy, pandas' CSV reader, pickle...) that is neither a declared
input nor part of the Python installation, the app's code, the run's output folder or the cache.
The record lists them per partition and the run warns once.

What it cannot see: files opened by native code (polars, pyarrow's Parquet and dataset readers,
HDF5, netCDF C libraries), by other processes, or by threads that ``work()`` starts itself.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "data.txt").write_text("1 2 3")
>>> watch = ReadWatch(declared=(), ignored=())
>>> with watch:
...     _ = (folder / "data.txt").read_text()
>>> [Path(p).name for p in watch.paths]
['data.txt']
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ReadWatch", "ignored_folders"]

#: at most this many paths per partition are kept (a partition reading 10,000 files still gets a short record)
MAX_PATHS = 20
#: never reported: the kernel's and the system's own files
_SYSTEM = ("/proc/", "/sys/", "/dev/", "/etc/", "/usr/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/run/")
_CODE_SUFFIXES = (".py", ".pyc", ".pyd", ".so", ".pth")

# An audit hook cannot be removed, so each process installs one at most, and it does nothing
# (one attribute read) unless the running thread has an active `ReadWatch`.
_state = threading.local()
_hook_lock = threading.Lock()
_hook_installed = False


def ignored_folders(extra: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """The folders whose files are never undeclared reads: ``extra`` (the app's code, the run's
    out folder, the cache) and the Python installation's (stdlib, site-packages, the venv).
    Computed once per worker process and given to each `ReadWatch`."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages(), *map(str, extra)}
    folders.update(value for key in ("stdlib", "platstdlib", "purelib", "platlib") if (value := sysconfig.get_path(key)))
    return tuple(sorted(os.path.join(os.path.realpath(f), "") for f in folders if f))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open":
        return
    watch = getattr(_state, "watch", None)
    if watch is not None:
        watch.opened(*args)


def _install_hook() -> None:
    global _hook_installed
    if _hook_installed:  # the common case, without the lock
        return
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


class ReadWatch:
    """A context manager: while active, notes the files this thread opens for reading that are
    not ``declared`` (files, or folders and everything below them) nor under an ``ignored`` folder
    (`ignored_folders`: the app's code, the run's out folder, the cache, Python's own files) nor
    the system's."""

    def __init__(self, declared: Iterable[str | Path], ignored: tuple[str, ...]) -> None:
        # One is made per partition: nothing is resolved until work() opens a file.
        self._declared_as_given = declared
        self.declared: frozenset[str] | None = None  # real paths, once needed
        self.declared_folders: tuple[str, ...] = ()
        self.ignored = ignored
        self.paths: list[str] = []
        self.count = 0  # undeclared files read, including those past MAX_PATHS
        self._seen: set[str] | None = None
        self._previous: ReadWatch | None = None

    @property
    def untouched(self) -> bool:
        """Nothing was opened while it watched: it can watch another partition as it is."""
        return self._seen is None

    def __enter__(self) -> ReadWatch:
        _install_hook()
        self._previous = getattr(_state, "watch", None)
        _state.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _state.watch = self._previous

    def opened(self, path: Any, mode: str | None, flags: int) -> None:
        """The audit hook's ``open`` event: keep ``path`` if it is an undeclared read."""
        if not isinstance(path, str | bytes | os.PathLike):
            return  # a file descriptor
        if mode is not None:
            if "r" not in mode and "+" not in mode:
                return
        elif flags & os.O_ACCMODE == os.O_WRONLY:
            return
        _state.watch = None  # realpath and isdir below must not report themselves
        try:
            self._note(os.fsdecode(path))
        finally:
            _state.watch = self

    def _note(self, path: str) -> None:
        if self.declared is None:
            self.declared = frozenset(os.path.realpath(p) for p in self._declared_as_given)
            self.declared_folders = tuple(os.path.join(p, "") for p in self.declared if os.path.isdir(p))
        full = os.path.realpath(path)
        if self._seen is None:
            self._seen = set()
        elif full in self._seen:
            return
        self._seen.add(full)
        if (full in self.declared or full.startswith(self.declared_folders) or full.startswith(self.ignored)
                or full.startswith(_SYSTEM) or full.endswith(_CODE_SUFFIXES) or os.path.isdir(full)):
            return
        self.count += 1
        if len(self.paths) < MAX_PATHS:
            self.paths.append(full)
