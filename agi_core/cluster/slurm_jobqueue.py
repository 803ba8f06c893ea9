"""dask-jobqueue, the Slurm backend's one optional dependency: imported when a cluster needs it, and only here.

The backend's class and its options load without it, so settings, `agi cluster ports` and the
web UI's form work where the ``slurm`` extra is not installed; what needs it (`jobqueue`) raises an
`AgiError` naming the extra.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from ..base.errors import AgiError
from .slurm_names import job_worker_name

__all__ = ["EXTRA_FIX", "jobqueue", "jobqueue_cluster", "slurm_job"]

#: what installs dask-jobqueue, which the backend needs (the ``slurm`` extra of agi's distribution)
EXTRA_FIX = "pip install 'agi-orchestrator[slurm]' (the slurm extra: dask-jobqueue)"


@contextlib.contextmanager
def _keeping_sigint() -> Iterator[None]:
    """Put back the SIGINT handler after the block: importing dask-jobqueue replaces it with
    ``sys.exit()`` (dask_jobqueue/runner.py), which would turn Ctrl-C of a run into a SystemExit
    raised wherever the event loop happens to be, instead of our orderly interrupt."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def jobqueue() -> Any:
    """The ``dask_jobqueue`` module, imported now (its SIGINT handler undone: `_keeping_sigint`).

    Raises `AgiError` naming the ``slurm`` extra when it is not installed: the backend's class
    and its options load without it, so settings and `agi cluster ports` work anyway."""
    try:
        with _keeping_sigint():
            import dask_jobqueue
            import dask_jobqueue.slurm  # noqa: F401 - SLURMJob
    except ImportError as exc:
        raise AgiError(f'[cluster] backend = "slurm" needs dask-jobqueue, which is not installed ({exc})',
                       fix=EXTRA_FIX) from None
    return dask_jobqueue


def jobqueue_cluster(**options: Any) -> Any:
    """dask-jobqueue's `SLURMCluster`, its job ``j``'s worker named `job_worker_name` (``slurm-<j>``)."""

    class JobqueueCluster(jobqueue().SLURMCluster):  # type: ignore[misc,name-defined]
        def _new_worker_name(self, worker_number: int) -> str:  # dask's documented hook for worker names
            return job_worker_name(worker_number)

    return JobqueueCluster(**options)


def slurm_job(**options: Any) -> Any:
    """One dask-jobqueue `SLURMJob` (a warm cluster's worker job, or the script `--dry-run` shows)."""
    return jobqueue().slurm.SLURMJob(**options)
