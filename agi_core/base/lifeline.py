"""Worker processes die with the process that started them, even when it is killed by SIGKILL.

On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child. A pipe's end of
file is not enough on its own: forked siblings inherit each other's pipe ends, so a dead
manager's pipes may never close, and a thread watching a pipe cannot run while a partition holds
the GIL. Used by pool slots (`executors.slot_process`) and embedded Dask workers (`cluster.inprocess`,
which loads this file as a Dask worker preload: `PRELOAD`, `dask_setup`). The signal is tied to
the parent *thread* that started the child: both start their children from threads that live
as long as the children should.

This module imports only the standard library: a worker loads it by path, without importing
agi_core (which would cost every worker a fraction of a second at start).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

__all__ = ["MANAGER_PID_ENV", "PRELOAD", "dask_setup", "die_with_parent"]

#: the environment variable that carries the manager's PID into its embedded Dask workers
MANAGER_PID_ENV = "AGI_MANAGER_PID"
#: this file, as a Dask ``preload`` entry (a path: loaded without importing the agi_core package)
PRELOAD = os.path.abspath(__file__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits; exit now if it already has.

    A no-op where ``prctl`` does not exist (not Linux): there the pipe to the manager is the
    only lifeline.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here, not at the top: 0.17 s a manager that starts no process need not pay
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def dask_setup(worker: Any) -> None:
    """Dask preload hook, run in each embedded worker process as it starts.

    The worker also ignores SIGINT from here on: Ctrl-C in a terminal reaches every process of
    its group, and a worker's own asyncio runner turned it into a ``KeyboardInterrupt`` traceback
    per worker; the manager handles Ctrl-C and closes its workers (as pool slots do)."""
    parent = os.environ.get(MANAGER_PID_ENV)
    if parent and parent.isdigit():
        die_with_parent(int(parent))
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: nothing to do there
            pass
