"""A warm cluster's state file, changed under a lock: runs attached at once, and `agi cluster down`, each see the others' changes.

`agi cluster up` writes the state file once; afterwards a run attached to a warm Slurm cluster adds
the replacement jobs it submits (`slurm_warm`), and `agi cluster down` marks the cluster as
stopping before it cancels the jobs the file names. Each of them reads, changes and writes the
file while it holds an exclusive `flock` on ``<state file>.lock`` beside it, so no change is lost
between two processes, and writes it atomically (rename), so a reader without the lock never sees
half a file. The lock is held only for that read and write (microseconds; never across an
``sbatch``), so blocking on it is harmless. The lock file is left in place: deleting a lock file
others may hold is a race of its own.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "toy.json"
>>> with editing(path) as state:
...     state is None
True
>>> write_json_atomic(path, {"jobs": {}})
>>> with editing(path) as state:
...     state["jobs"]["slurm-1"] = "12"
>>> json.loads(path.read_text())
{'jobs': {'slurm-1': '12'}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..base.atomic import write_json_atomic
from ..base.errors import AgiError

__all__ = ["editing", "state_lock"]


@contextlib.contextmanager
def state_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the state file ``path`` (``<path>.lock``, made when missing)."""
    lock = path.with_name(f"{path.name}.lock")
    try:
        handle = open(lock, "a")  # noqa: SIM115 - closed below, after the unlock
    except OSError as exc:
        raise AgiError(f"{lock}: cannot open the warm cluster's lock file ({exc.strerror})",
                       fix=f"make {path.parent} writable by this user") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def editing(path: Path) -> Iterator[dict[str, Any] | None]:
    """The state in ``path`` under its lock (None: there is none), written back atomically when
    the block ends without an exception and changed it."""
    with state_lock(path):
        try:
            text = path.read_text()
        except FileNotFoundError:
            yield None
            return
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AgiError(f"{path}: unreadable warm-cluster state ({exc})",
                           fix=f"stop its processes by hand if any run, then delete {path}") from None
        yield state
        if json.dumps(state, sort_keys=True, default=str) != json.dumps(json.loads(text), sort_keys=True, default=str):
            write_json_atomic(path, state)
