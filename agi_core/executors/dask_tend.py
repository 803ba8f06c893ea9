"""The workers of a Dask run while it goes: joins take work, leaves hand theirs on, workers about
to retire are drained, ended ones replaced, and a run whose workers all left waits for one.

Separate from `dask` because it is the run's second loop (a task beside the one that collects
outcomes): it only looks at the cluster and asks the elastic queues (`dask_elastic`) and the
backend to act; it never touches outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..base.errors import AgiError
from ..base.events import EventSink, Notice
from .dask_elastic import ElasticBatches

__all__ = ["WATCH_S", "Tending"]

#: how often a run asks the scheduler which workers it has (joins and leaves)
WATCH_S = 0.5


class Tending:
    """Tends one run's workers. ``refresh_facts``: have the record learn what late workers run;
    ``join_wait``: seconds the run waits for a worker when every one left."""

    def __init__(self, client: Any, backend: Any, emit: EventSink, join_wait: float,
                 refresh_facts: Callable[[], Awaitable[None]]) -> None:
        self._client = client
        self._backend = backend
        self._emit = emit
        self._join_wait = join_wait
        self._refresh_facts = refresh_facts
        self._retirements: Any = None  # workers drained before they retire (`dask_retire`), when the backend's do

    async def watch(self, elastic: ElasticBatches, pending: Any) -> None:
        """Look at the workers every `WATCH_S` while the run goes: joins take work, leaves hand theirs on."""
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                futures = await elastic.poll()
            except Exception:  # noqa: BLE001 - the scheduler is gone: the run's own loop says so
                return
            if futures:
                pending.update(futures)
            await self._drain(elastic)
            await self._tend(elastic, pending)
            if elastic.joined_since_facts:
                elastic.joined_since_facts = False
                await self._refresh_facts()

    async def _drain(self, elastic: ElasticBatches) -> None:
        """Stop giving work to workers about to retire, and have the backend replace them now
        (`dask_retire`: a Slurm job's walltime), when its workers retire on their own."""
        from .dask_retire import Retirements

        if self._retirements is None:
            window = self._backend.drain_window()
            if window is None:
                return
            self._retirements = Retirements(self._client, self._backend, window, self._emit)
        try:
            await self._retirements.look(elastic)
        except Exception as exc:  # noqa: BLE001 - draining is a help: without it, Dask's lifetime still retires them
            self._emit(Notice(f"could not drain the workers that retire: {type(exc).__name__}: {exc}", level="warning"))

    async def _tend(self, elastic: ElasticBatches, pending: Any) -> None:
        """Let the backend replace workers that ended while work remains (`ClusterBackend.tend`:
        a Slurm job cancelled, preempted or out of walltime)."""
        try:
            await self._backend.tend(work_left=bool(elastic.waiting()) or not pending.is_empty(), emit=self._emit)
        except Exception as exc:  # noqa: BLE001 - replacing workers is a help: the run goes on with those it has
            self._emit(Notice(f"could not replace the workers that left: {type(exc).__name__}: {exc}", level="warning"))

    async def until_a_worker(self, elastic: ElasticBatches, pending: Any) -> None:
        """No task is left in Dask but batches are queued: every worker left. Wait for one to
        join (the watcher submits to it), up to the join wait, then fail naming what is left."""
        wait = self._join_wait
        while pending.is_empty():
            if elastic.stranded_for() > wait:
                raise AgiError(f"every worker left the cluster and none joined within {wait:g} s: "
                               f"{elastic.waiting()} batch(es) of partitions were never run",
                               fix="check the workers' hosts or jobs (agi cluster status APP); "
                                   "`agi run APP --resume RUN` computes only what is left")
            await asyncio.sleep(WATCH_S)
