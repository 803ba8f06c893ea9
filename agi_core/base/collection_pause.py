"""Garbage collection paused while a run makes the objects it keeps to its end: the plan, its
cache keys, the results found in the cache.

Python's collector runs every few hundred allocations and, now and then, walks every object alive:
building a plan of 100,000 partitions (and loading 100,000 cache hits) triggers collections that
walk the same long-lived objects again and again and free nothing (0.2 s of an unchanged re-run
of 100,000 partitions). Paused over such a block, then frozen (`gc.freeze`: later collections skip
them) until the run ends and `thaw` gives them back to the collector.

Only synchronous blocks are paused (no ``await`` inside), so two runs in one event loop (a
notebook) cannot see each other's pause.

At the interpreter's exit, Python collects once more, walking every object still alive: a script
that holds the result of a run of 100,000 partitions spent 0.3 s in that walk after its last line
(3 s at 1,000,000). `freeze_at_exit` makes that collection skip what is alive then (the objects are
still freed, by their reference counts, as the modules are torn down); what it gives up is the
``__del__`` of objects left in reference cycles at exit, which Python never promises to run.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_at_exit", "making_long_lived", "thaw"]


@contextmanager
def making_long_lived() -> Iterator[None]:
    """Collection paused over the block; what it made is frozen after it (collected again after `thaw`).

    >>> import gc
    >>> with making_long_lived():
    ...     kept = [[i] for i in range(1000)]
    ...     assert not gc.isenabled()
    >>> gc.isenabled(), gc.get_freeze_count() >= 1000
    (True, True)
    >>> thaw()
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def thaw() -> None:
    """Give what `making_long_lived` froze back to the collector (at the end of a run)."""
    gc.unfreeze()


def freeze_at_exit() -> None:
    """Freeze what is alive when the interpreter exits (see the module's docstring); registered
    once however often it is called (a notebook runs many times)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
