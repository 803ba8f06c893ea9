"""Workers that retire on their own, drained before they do: nothing they run is lost.

A Slurm job's Dask workers retire before its walltime (Dask's ``--lifetime``, randomised by
``--lifetime-stagger``). Dask's retirement does not wait for the tasks a worker runs: they run
again elsewhere, so a partition that was running then runs twice (its ``retries`` is 1). So the
run drains each such worker `ClusterBackend.drain_window` seconds before it retires: it takes no
new batch, its queued batches go to the other workers (`ElasticBatches.drain`), the batches it
holds finish there, and the backend submits its replacement now (`ClusterBackend.retiring`), so
the new worker joins before the old one leaves. Dask's lifetime then closes an idle worker.

When it retires is asked of the worker once, when it joins (`dask_watch.seconds_to_retirement`,
which runs on the worker, so it lives in a module of the workers' code hash): its randomised
lifetime counted from its process's start, as seconds from now on the worker's own clock, so the
manager's clock need not agree with the node's.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..base.events import EventSink, Notice
from .dask_elastic import ElasticBatches
from .dask_watch import seconds_to_retirement

__all__ = ["Retirements"]


class Retirements:
    """When each joined worker starts to drain (its address -> the manager's monotonic time),
    and the ones drained already."""

    def __init__(self, client: Any, backend: Any, window: float, emit: EventSink) -> None:
        self._client = client
        self._backend = backend
        self._window = window
        self._emit = emit
        self._drain_at: dict[str, float] = {}  # worker address -> when it stops taking work
        self._drained: set[str] = set()

    async def look(self, elastic: ElasticBatches) -> None:
        """Ask the workers that joined since the last look when they retire, and drain those due."""
        new = [address for address in elastic.joined.values() if address not in self._drain_at]
        if new:
            left = await self._client.run(seconds_to_retirement, workers=new, on_error="return")
            now = time.monotonic()
            for address in new:
                seconds = left.get(address)
                self._drain_at[address] = now + seconds - self._window if isinstance(seconds, (int, float)) else math.inf
        now = time.monotonic()
        for slot, address in list(elastic.joined.items()):
            if self._drain_at.get(address, math.inf) > now or address in self._drained:
                continue
            self._drained.add(address)
            name = elastic.worker_name(slot)
            retires = self._drain_at[address] + self._window - now
            elastic.drain(slot)
            self._emit(Notice(f"worker {name} retires in {max(0.0, retires):.0f} s (Dask's --lifetime, before its job's "
                              "walltime): it takes no new partitions and finishes the ones it runs"))
            await self._backend.retiring(name, work_left=bool(elastic.waiting()), emit=self._emit)
