"""What each Dask worker runs now, as the watchdog and a stopped run's report need it, and how a
hung worker is stopped.

Separate from `dask` because it serves the watchdog (`run.watchdog`), not the run's loop: it asks
the scheduler's view (`dask_watch`) and, for a worker gone silent, the tasks' started logs
(`attempts`) on the share.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from .attempts import last_started, started_dir
from .base import InFlight

__all__ = ["SILENT_S", "in_flight_on", "stop_worker_at"]

#: a worker silent this long (no heartbeat) may have stopped before saying what it runs
SILENT_S = 5.0


async def in_flight_on(client: Any, worker_names: dict[str, str], futures: dict[Any, tuple[str, list[str]]],
                    out_dir: Path) -> list[InFlight]:
    """What each worker runs, as the scheduler last heard it. A worker silent for `SILENT_S`
    (stopped, stuck in the kernel) may have gone silent before it said what it started: its
    tasks' started logs (`attempts`) name the partition, and the log's time says since when.
    ``worker_names``: slot -> Dask worker name; ``futures``: task -> (slot, partition ids)."""
    from .dask_watch import scheduler_view

    view = await client.run_on_scheduler(scheduler_view)
    slot_of = {name: slot for slot, name in worker_names.items()}
    items = []
    for address, (name, host, worker_pid, running, silent_s, holding) in view.items():
        where = (slot_of.get(name, name), host, worker_pid or 0)
        if not running and silent_s > SILENT_S:
            running = _started_on(futures, out_dir, holding, time.time() - silent_s)
        items += [InFlight(pid, *where, since, worker=address) for pid, since in running]
    return items


def _started_on(futures: dict[Any, tuple[str, list[str]]], out_dir: Path, keys: list[str],
                silent_since: float) -> list[tuple[str, float]]:
    """The partition a silent worker last started, from the started logs of the tasks it
    holds; when none started, the first partition it holds, since it went silent."""
    ids_of = {future.key: ids for future, (_, ids) in futures.items()}
    held = [ids_of[key] for key in keys if key in ids_of]
    started = [last for ids in held if (last := last_started(started_dir(out_dir), ids)) is not None]
    if started:
        return [max(started, key=lambda item: item[1])]
    return [(held[0][0], silent_since)] if held else []


async def stop_worker_at(client: Any, address: str) -> None:
    """SIGKILL the worker's process through its nanny (which starts a fresh one), and have
    the scheduler drop the worker at once, so its tasks run elsewhere even if the process
    cannot die yet (stuck in the kernel on a dead NFS mount)."""
    from .dask_watch import drop_worker, stop_worker_process

    try:
        await asyncio.wait_for(client.run(stop_worker_process, workers=[address], nanny=True, on_error="return"), 10)
    except (asyncio.TimeoutError, OSError):
        pass  # the scheduler drops it below all the same
    await client.run_on_scheduler(drop_worker, address=address)
