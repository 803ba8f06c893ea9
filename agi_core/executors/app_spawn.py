"""Worker processes of this machine started with another interpreter (the app's environment).

multiprocessing's spawn start method uses one interpreter for the whole process (a module-global
setting); this context carries the interpreter on each process object instead, so nothing
process-wide changes. It reproduces CPython's spawn launcher (``popen_spawn_posix.Popen._launch``,
about 25 lines) with two differences: the child runs ``python``, and it keeps its own
``sys.path`` and does not re-import the manager's ``__main__`` (whose imports it may lack).
Process targets must therefore live in modules importable there (agi_core's are).
"""

from __future__ import annotations

import io
import os
from multiprocessing import context as mp_context
from multiprocessing import popen_spawn_posix, reduction, resource_tracker, spawn, util
from pathlib import Path
from typing import Any

__all__ = ["AppSpawnContext", "spawn_context"]


def _child_preparation(data: dict[str, Any]) -> dict[str, Any]:
    """Spawn's preparation data for a child of another interpreter: it keeps its own sys.path (the manager's
    would hide its packages) and does not re-import the manager's ``__main__`` (whose imports it may lack)."""
    return {key: value for key, value in data.items() if key not in ("sys_path", "init_main_from_path", "init_main_from_name")}


class _AppPopen(popen_spawn_posix.Popen):
    """CPython's spawn launcher (``popen_spawn_posix.Popen._launch``) for the interpreter the process names."""

    _fds: list[int]

    def _launch(self, process_obj: Any) -> None:
        python = os.fsencode(process_obj._agi_python)
        self._fds.append(tracker_fd := resource_tracker.getfd())  # type: ignore[arg-type]  # tracker: manager Python
        fp = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            reduction.dump(_child_preparation(spawn.get_preparation_data(process_obj._name)), fp)
            reduction.dump(process_obj, fp)
        finally:
            mp_context.set_spawning_popen(None)
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.finalizer = util.Finalize(self, util.close_fds, [parent_r, parent_w])  # type: ignore[attr-defined]
        try:
            self._fds.extend([child_r, child_w])
            command: list[Any] = [python, *spawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)[1:]]
            self.pid = util.spawnv_passfds(python, command, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as f:
                f.write(fp.getbuffer())
        finally:
            os.close(child_r)
            os.close(child_w)


class AppSpawnContext(mp_context.SpawnContext):
    def __init__(self, python: Path) -> None:
        self.python = str(python)

    def Process(self, *args: Any, **kwargs: Any) -> mp_context.SpawnProcess:  # type: ignore[override]
        process = mp_context.SpawnProcess(*args, **kwargs)
        process._Popen, process._agi_python = _AppPopen, self.python  # type: ignore[attr-defined,method-assign]
        return process


def spawn_context(python: Path) -> AppSpawnContext:
    """A multiprocessing context whose children run ``python`` (`AppPython.executable`) with its own packages.
    Nothing process-wide changes: the interpreter rides on each process object (targets must import there)."""
    return AppSpawnContext(python)
