"""Garbage collection paused while the ``agi`` process loads its modules, resumed before a command runs.

Importing click, pydantic, agi_core and a command's modules allocates some 100,000 objects that live
as long as the process: the collector walks them about a hundred times during the import of an
``agi run`` (a tenth of the instructions of a one-partition run, more than the work) and frees
nothing. `main` pauses collection; `_Group.get_command` resumes it once the command's module is
loaded, and freezes what was loaded (`gc.freeze`: later collections skip it), so the command itself,
an app's ``work()`` in mode 0 included, runs with the collector as Python sets it.
"""

from __future__ import annotations

import gc

__all__ = ["LoadingCollections"]


class LoadingCollections:
    """Collection paused from creation until `resume` (once; a no-op where it was already paused)."""

    def __init__(self) -> None:
        self._paused = gc.isenabled()
        gc.disable()

    def resume(self) -> None:
        """Freeze what is loaded and collect again, as before the pause."""
        if self._paused:
            self._paused = False
            gc.freeze()
            gc.enable()
