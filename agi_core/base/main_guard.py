"""Refuse to start work from a worker process that is re-importing the user's script.

Dask's nannies (and any multiprocessing "spawn" child) start a fresh interpreter that imports the
parent's ``__main__`` script again, as ``__mp_main__``, before it runs what it was started for. A
script that calls ``asyncio.run(AGI.run(...))`` at module level, without an
``if __name__ == "__main__":`` guard, would run the app again in each child: each child starts a
cluster of its own, multiprocessing refuses ("An attempt has been made to start a new process
before the current process has finished its bootstrapping phase"), and hundreds of lines of
tracebacks and a failed run record per child follow.

Instead, in such a child, `refuse_in_reimport` stops the child before anything starts or is
recorded, and leaves the reason where its parent finds it (`reimport_refused`): the parent, whose
local cluster then fails to start, raises that one error with its fix.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import AgiError

__all__ = ["ReimportedMainError", "refuse_in_reimport", "reimport_refused", "reimporting_main"]

_FIX = ('put the call under `if __name__ == "__main__":` (e.g. `if __name__ == "__main__": asyncio.run(main())`): '
        "Dask's worker processes import the script again when they start (docs/troubleshooting.md)")


#: the name Dask's nannies give the worker processes they spawn (`distributed.nanny.WorkerProcess`)
_DASK_WORKER = "Dask Worker process"


class ReimportedMainError(AgiError):
    """``AGI.*`` was called while a spawned worker process re-imported the user's script.

    Raised in a script (never by ``agi``), where nothing prints the fix: its text says it too."""

    def __str__(self) -> str:
        return f"{self.message}\nfix: {self.fix}"


def reimporting_main() -> bool:
    """True while this process is a spawn child still bootstrapping: importing its parent's
    ``__main__`` (multiprocessing marks that phase with ``_inheriting``, the flag its own
    "bootstrapping phase" check reads; the script runs as ``__mp_main__`` then)."""
    # A spawn child imports multiprocessing before it re-imports ``__main__``: a process that has
    # not imported it is no such child, and does not pay for the import (a mode-0 run)
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _note(parent: int) -> Path:
    """Where a child of process ``parent`` leaves the reason it stopped (one file per parent)."""
    return Path(tempfile.gettempdir()) / f"agi-reimported-main-{os.getuid()}-{parent}.txt"


def _message(call: str, script: str) -> str:
    return (f"{call} was called at module level of {script}, outside `if __name__ == \"__main__\":`: the worker "
            "processes of the local Dask cluster import the script again when they start, and would each run the app "
            "again; they stopped before starting anything")


def refuse_in_reimport(call: str) -> None:
    """Stop this process when ``call`` (e.g. ``AGI.run``) runs in a spawn child's re-import of
    ``__main__`` (the script calls it at module level, without a guard): nothing starts and
    nothing is recorded; the child exits with status 1. A Dask worker process leaves the reason
    to its parent (`reimport_refused`), whose cluster start then fails with it: one error, not one
    per worker. Any other spawned child prints it (``error:`` / ``fix:``)."""
    if not reimporting_main():
        return
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    message = _message(call, str(getattr(main, "__file__", None) or "the main script"))
    import multiprocessing

    if multiprocessing.current_process().name.startswith(_DASK_WORKER):  # its parent's cluster start will say it, once
        try:
            _note(os.getppid()).write_text(message)
            raise SystemExit(1)
        except OSError:
            pass
    raise SystemExit(f"error: {message}\nfix: {_FIX}")


def reimport_refused(since: float) -> ReimportedMainError | None:
    """The error to raise in this process when one of its spawn children stopped in
    `refuse_in_reimport` (after ``since``, epoch seconds), else None. Reading it removes it."""
    note = _note(os.getpid())
    try:
        if note.stat().st_mtime < since - 1:
            return None
        message = note.read_text()
    except OSError:
        return None
    note.unlink(missing_ok=True)
    return ReimportedMainError(message, fix=_FIX)

