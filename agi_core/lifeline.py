"""Worker processes die with the process that started them, even when it is killed by SIGKILL.

On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child. A pipe's end of
file is not enough on its own: forked siblings inherit each other's pipe ends, so a dead
manager's pipes may never close, and a thread watching a pipe cannot run while a partition holds
the GIL. Used by pool slots (`executors.slot_process`) and embedded Dask workers
(`cluster.lifeline`). The signal is tied to the parent *thread* that started the child: both
start their children from threads that live as long as the children should.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits; exit now if it already has.

    A no-op where ``prctl`` does not exist (not Linux): there the pipe to the manager is the
    only lifeline.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
