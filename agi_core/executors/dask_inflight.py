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

#: a worker silent this long (no heartbeat; Dask's come every 0.5 s or so) may have stopped before
#: saying what it runs: its tasks' started logs are read too (below any partition_timeout worth setting)
SILENT_S = 2.0


async def in_flight_on(client: Any, worker_names: dict[str, str], futures: dict[Any, tuple[str, list[str]]],
                    out_dir: Path) -> list[InFlight]:
    """What each worker runs, as the scheduler last heard it. A worker silent for `SILENT_S`
    (stopped, stuck in the kernel) may have gone silent before it said what it started: its
    tasks' started logs (`attempts`) name the partition, and the log's time says since when; a
    later partition of the batch its last heartbeat named wins over that one (it started the
    next partition, then froze). ``worker_names``: slot -> Dask worker name; ``futures``: task ->
    (slot, partition ids)."""
    from .dask_watch import scheduler_view

    view = await client.run_on_scheduler(scheduler_view)
    slot_of = {name: slot for slot, name in worker_names.items()}
    items = []
    for address, (name, host, worker_pid, running, silent_s, holding) in view.items():
        where = (slot_of.get(name, name), host, worker_pid or 0)
        if silent_s > SILENT_S:
            running = _moved_on(futures, out_dir, holding, running) if running else \
                _started_on(futures, out_dir, holding, time.time() - silent_s)
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


def _moved_on(futures: dict[Any, tuple[str, list[str]]], out_dir: Path, keys: list[str],
              running: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """What a silent worker's last heartbeat said it runs, each partition replaced by a later
    one of its batch where the batch's started log names one (the worker started it, then
    froze before its next heartbeat). Batch order, not clocks: the log's and the worker's may differ."""
    batches = [ids for future, (_, ids) in futures.items() if future.key in keys]
    now = []
    for pid, since in running:
        ids = next((ids for ids in batches if pid in ids), None)
        last = last_started(started_dir(out_dir), ids) if ids is not None else None
        now.append(last if last is not None and ids is not None and ids.index(last[0]) > ids.index(pid) else (pid, since))
    return now


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
