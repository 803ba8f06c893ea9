"""What an interrupted run (Ctrl-C, SIGTERM) keeps of the partitions that were running.

When a run is stopped, the partitions its workers were running never end. The record still says
when and where each started (``start``, ``worker``, ``host``; status ``not run``), so the
report's Gantt draws them as grey bars up to the run's end, and ``agi runs show`` can tell them
from partitions that never started. The executor is asked what runs before it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from pydantic_core import to_json

from ..executors import Executor, InFlight

__all__ = ["ASK_S", "running_at_stop", "unfinished_line"]

ASK_S = 2.0  # how long a stopping run waits for the executor to say what runs (a Dask scheduler may be going)

log = logging.getLogger(__name__)


async def running_at_stop(executor: Executor, timeout: float = ASK_S) -> list[InFlight]:
    """The partitions running now, or none when the executor cannot say within ``timeout``
    (what the record loses then is only where they ran)."""
    try:
        return await asyncio.wait_for(executor.in_flight(), timeout)
    except Exception:  # noqa: BLE001 - a run that is stopping must stop whatever this says
        log.debug("could not ask the executor what runs", exc_info=True)
        return []


def unfinished_line(item: InFlight, slots: Mapping[str, str]) -> bytes:
    """The record line of a partition that started at ``item.since`` and never ended: ``not
    run``, on its planned slot (``slots``), with the worker that ran it, named as finished
    partitions name it (so the Gantt draws it on the same row): a Dask worker (``item.worker``
    is its address) by its name, its slot's; a pool process by ``host:pid``."""
    worker = item.slot if item.worker else f"{item.host}:{item.pid}" if item.pid else item.host
    fields = {"id": item.id, "slot": slots.get(item.id, item.slot), "status": "not run", "host": item.host,
              "worker": worker, "start": item.since, "end": 0.0}
    if item.slot and item.slot != fields["slot"]:
        fields["ran_slot"] = item.slot
    return to_json(fields)
