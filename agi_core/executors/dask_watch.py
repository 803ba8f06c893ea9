"""What each Dask worker is running, as the scheduler last heard it, and how to stop a worker.

Each worker keeps the partition each of its threads runs (`RunningPartitions`, a worker plugin
that `run_batch` tells) and sends it with its heartbeat (a worker metric, about every second).
The manager asks the scheduler, never the worker: a worker that is stopped (SIGSTOP) or stuck
in the kernel (a dead NFS mount) does not answer, and the scheduler keeps what it last sent, so
the partition's time keeps growing where the manager can see it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["PLUGIN_NAME", "RunningPartitions", "allow_failures", "drop_worker", "run_stranded", "running_partition",
           "scheduler_view", "seconds_to_retirement", "stop_worker_process"]

PLUGIN_NAME = "agi-running-partitions"
_METRIC = "agi_running"


class RunningPartitions(WorkerPlugin):
    """A Dask worker plugin: partition id and start of what each of the worker's threads runs.

    Registered by the manager (`Client.register_plugin`); `run_batch` finds it on its worker.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self._running: dict[int, tuple[str, float]] = {}

    def setup(self, worker: Any) -> None:
        self._running = {}
        worker.metrics[_METRIC] = self._metric

    def teardown(self, worker: Any) -> None:
        worker.metrics.pop(_METRIC, None)

    def started(self, pid: str) -> None:
        self._running[threading.get_ident()] = (pid, time.time())

    def finished(self) -> None:
        self._running.pop(threading.get_ident(), None)

    def _metric(self, worker: Any) -> list[tuple[str, float]]:
        return list(self._running.values())


def running_partition() -> RunningPartitions | None:
    """This worker's plugin, when the code runs in a Dask worker that has it (else None)."""
    try:
        from distributed import get_worker

        return get_worker().plugins.get(PLUGIN_NAME)  # type: ignore[return-value]
    except (ImportError, ValueError):  # not in a worker
        return None


def scheduler_view(dask_scheduler: Any) -> dict[str, tuple[str, str, int, list[tuple[str, float]], float, list[str]]]:
    """Run on the scheduler: worker address → (name, host, pid, what its threads run as it last
    said, seconds since it last said anything, the keys of the tasks it holds)."""
    now = time.time()
    return {address: (str(ws.name), ws.host, ws.pid, list(ws.metrics.get(_METRIC, ())), now - ws.last_seen,
                      [str(ts.key) for ts in ws.processing])
            for address, ws in dask_scheduler.workers.items()}


def stop_worker_process(dask_worker: Any) -> int | None:
    """Run on a nanny: SIGKILL its worker process (which works on a stopped process too); the
    nanny then starts a fresh one. Returns the pid killed."""
    import os
    import signal

    process = getattr(getattr(dask_worker, "process", None), "process", None)
    pid = getattr(process, "pid", None)
    if pid:
        os.kill(pid, signal.SIGKILL)
    return pid


def seconds_to_retirement(dask_worker: Any) -> float | None:
    """Run on a worker: seconds until its lifetime (Dask's ``--lifetime``) closes it; None without
    one. Counted from its process's start, a little before Dask started the lifetime's clock: never
    late. On the worker's own clock, so the manager's need not agree with the node's (`dask_retire`)."""
    lifetime = getattr(dask_worker, "lifetime", None)
    if not lifetime:
        return None
    import psutil

    return float(psutil.Process().create_time() + lifetime - time.time())


def allow_failures(dask_scheduler: Any, count: int) -> None:
    """Run on the scheduler: a task whose worker is lost runs at most ``count`` more times."""
    dask_scheduler.allowed_failures = count


async def drop_worker(dask_scheduler: Any, address: str) -> None:
    """Run on the scheduler: forget a worker now; its tasks go to others (or fail, past the budget)."""
    if address in dask_scheduler.workers:
        await dask_scheduler.remove_worker(address, stimulus_id="agi-partition-timeout", close=False)


def run_stranded(dask_scheduler: Any) -> int:
    """Run on the scheduler: tasks left without a worker because every worker they named left
    go to the workers there are now. Their restriction is loose (``allow_other_workers``), but
    Dask, when a worker joins, only hands it the waiting tasks that name it (or name none):
    without this, a run whose original workers all left would wait for ever beside new ones.
    Returns how many tasks were handed on."""
    stranded = [ts for ts in dask_scheduler.unrunnable
                if ts.loose_restrictions and ts.worker_restrictions
                and not any(address in dask_scheduler.workers for address in ts.worker_restrictions)]
    for ts in stranded:
        ts.worker_restrictions = None  # the workers it named are gone; it may run anywhere
    runnable = [ts for ts in stranded if dask_scheduler.valid_workers(ts) is None or dask_scheduler.valid_workers(ts)]
    if runnable and dask_scheduler.workers:
        runnable.sort(key=lambda ts: ts.priority, reverse=True)  # processed last-in first-out
        dask_scheduler.transitions({ts.key: "processing" for ts in runnable}, stimulus_id=f"agi-stranded-{time.time()}")
    return len(runnable)
