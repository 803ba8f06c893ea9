"""The embedded cluster's worker processes die with the manager, even when it is SIGKILLed.

Their Nannies live in the manager, so each worker process is the manager's child. Dask's own
lifeline is a pipe watched by a thread in the worker: when a partition holds the GIL (a C
extension, a regular expression, a Cython kernel without ``nogil``) that thread cannot run, and
the orphan computes on for as long as the call lasts. So each worker also asks the kernel to
SIGKILL it when its parent exits (``prctl(PR_SET_PDEATHSIG)``), from a Dask worker preload
(`dask_setup`), with the manager's PID passed in `MANAGER_PID_ENV`.

Launched (detached) workers do not load it: a warm cluster is meant to outlive the manager.
"""

from __future__ import annotations

import os
from typing import Any

from ..lifeline import die_with_parent

__all__ = ["MANAGER_PID_ENV", "PRELOAD", "dask_setup"]

#: the environment variable that carries the manager's PID into its worker processes
MANAGER_PID_ENV = "AGI_MANAGER_PID"
#: this module, as a Dask ``preload`` entry
PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Dask preload hook, run in each worker process as it starts."""
    parent = os.environ.get(MANAGER_PID_ENV)
    if parent and parent.isdigit():
        die_with_parent(int(parent))
