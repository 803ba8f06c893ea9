"""A Dask run's independent batches as workers come and go: submitted a window at a time per
worker, the rest queued (`elastic.BatchQueues`) and moved when the set of workers changes.

The run starts with the workers that joined (``[cluster] min_workers``); the batches planned for
the others go to them at once. While the run goes, `poll` asks the scheduler who is there: a
worker that joins (late, or a fresh process of a slot whose worker died) takes queued batches
from the most loaded slots; one that leaves hands its queued batches to the others (the tasks it
held are Dask's to run again elsewhere, as before). Nothing submitted is ever taken back, so a
partition never runs twice for being moved. A worker that retires soon (`drain`: a Slurm job's
walltime, `dask_retire`) takes no new batch and hands its queued ones on, as a leaving one does,
while the batches it holds finish there. Each move is an event (`PartitionsMoved`), as are
joins and leaves (`WorkerJoined`, `WorkerLeft`), for the CLI and the web UI.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..base.events import EventSink, Notice, PartitionsMoved, WorkerJoined, WorkerLeft
from .elastic import Batch, BatchQueues, Move, window

__all__ = ["ElasticBatches"]


def _unset(batch: Batch, slot: str) -> Any:
    raise RuntimeError("ElasticBatches.begin was not called")


class ElasticBatches:
    """The queued batches, who serves which slot now, and what each worker holds submitted.

    ``worker_names`` maps the plan's slots to the Dask names of their workers (a worker of
    another name that joins serves a slot of its own name); ``join_wait``: seconds after which
    workers still missing are recorded as never joined, with ``report(joined names)``.
    """

    def __init__(self, client: Any, worker_names: Mapping[str, str], *,
                 emit: EventSink, join_wait: float, report: Callable[[set[str]], Awaitable[str]],
                 capacity: Mapping[str, float] | None = None, capabilities: Mapping[str, tuple[str, ...]] | None = None,
                 admit: Callable[[str, str, str], Awaitable[bool]] | None = None) -> None:
        self._client = client
        self._names = dict(worker_names)
        self._slot_of = {name: slot for slot, name in worker_names.items()}
        self._submit: Callable[[Batch, str], Any] = _unset
        self._weigh: Callable[[Batch], tuple[float, frozenset[str]]] | None = None
        self.joined_since_facts = False  # a worker joined since the record last asked what workers run
        self._emit = emit
        self._report = report
        self._deadline: float | None = time.monotonic() + join_wait
        self._join_wait = join_wait
        self._capacity = dict(capacity or {})
        self._capabilities = dict(capabilities or {})
        self.joined: dict[str, str] = {}  # slot -> its worker's address now
        self._threads: dict[str, int] = {}
        self._held: dict[str, int] = {}  # slot -> batches submitted to it and not finished
        self._runs_on: dict[Any, str] = {}  # future -> the slot it was submitted to
        self._seen: set[str] = set()  # every worker name that joined at some point
        self.queues = BatchQueues((), capacity=self._capacity, capabilities=self._capabilities)
        #: the workers that never joined (Dask names), and the backend's report on them
        self.absent: list[str] = []
        self.absent_report = ""
        self.moved = 0  # partitions moved off the slot they were planned for (or last queued on)
        self._empty_since: float | None = None
        #: whether the worker at (address, name, host) may take work (`join_check`: its code and versions)
        self._admit = admit
        #: the slots whose worker retires soon: it takes no new batch (`drain`)
        self.draining: set[str] = set()

    # -- who is there --------------------------------------------------------------------------

    async def refresh(self, *, announce: bool = True) -> tuple[list[str], list[str]]:
        """Ask the scheduler which workers it has: (slots that joined, slots that left) since the last call."""
        identity = await self._client.scheduler.identity(n_workers=-1)
        now: dict[str, tuple[str, int, str]] = {}
        for address, info in identity["workers"].items():
            name = str(info.get("name"))
            slot = self._slot_of.get(name, name)
            if info.get("status", "running") != "running" and self.joined.get(slot) != address:
                # Registered but not running yet: the scheduler places nothing on it, so a batch
                # submitted for it now would run on another worker (loose restrictions), behind
                # whatever that one runs. It joins at the next look. (A joined worker that pauses
                # stays joined.)
                continue
            host = str(info.get("host") or "")
            if self._admit is not None and self.joined.get(slot) != address and not await self._admit(address, name, host):
                continue  # other code than the manager's: refused, or installed and back later (`join_check`)
            self._seen.add(name)
            now[slot] = (address, int(info.get("nthreads") or 1), host)
        joined = [slot for slot in now if slot not in self.joined or self.joined[slot] != now[slot][0]]
        left = [slot for slot in self.joined if slot not in now or self.joined[slot] != now[slot][0]]
        for slot in left:
            del self.joined[slot]
            retired = slot in self.draining
            self.draining.discard(slot)  # a fresh worker of that name takes work again
            self._held[slot] = 0
            self._runs_on = {future: s for future, s in self._runs_on.items() if s != slot}  # Dask re-runs them elsewhere
            if announce:
                self._emit(WorkerLeft(self._names.get(slot, slot), slot, "retired (its lifetime)" if retired else ""))
        for slot in joined:
            if self._names.get(slot, slot) in self.absent:  # recorded as never joined, but came after all
                self.absent.remove(self._names.get(slot, slot))
                self.absent_report = self.absent_report if self.absent else ""
            address, threads, host = now[slot]
            self.joined[slot], self._threads[slot] = address, threads
            self._held.setdefault(slot, 0)
            self.queues.add(slot, self._capacity.get(slot, 1.0), self._capabilities.get(slot, ()))
            if announce:
                self.joined_since_facts = True
                self._emit(WorkerJoined(self._names.get(slot, slot), slot, host))
        return joined, left

    # -- the batches ---------------------------------------------------------------------------

    def begin(self, batches: list[Batch], submit: Callable[[Batch, str], Any],
              weigh: Callable[[Batch], tuple[float, frozenset[str]]]) -> list[Any]:
        """Queue the run's batches, hand those of absent slots to the joined ones, and submit
        each joined worker's window; returns the futures. ``submit(batch, slot)`` submits a
        batch to the worker serving ``slot`` and returns its future; ``weigh(batch)`` gives its
        weight and needs, asked only once something has to move (a pass over the partitions
        that a run whose workers all came and stayed never pays)."""
        self._submit, self._weigh = submit, weigh
        self.queues = BatchQueues(batches, capacity=self._capacity, capabilities=self._capabilities)
        for slot in self.joined:
            self.queues.add(slot, self._capacity.get(slot, 1.0), self._capabilities.get(slot, ()))
        absent = [s for s in self.queues.slots() if s not in self.joined]
        if absent:
            self._weighed()
            self._moved(self.queues.orphan(absent, list(self.joined)))
        return self._fill_all()

    def _weighed(self) -> None:
        """Weigh the queued batches, once, before the first move (none moved before it)."""
        weigh, self._weigh = self._weigh, None
        if weigh is not None:
            self.queues.reweigh(weigh)

    def finished(self, future: Any) -> list[Any]:
        """A submitted batch finished: its worker's window has room for the next ones."""
        slot = self._runs_on.pop(future, None)
        if slot is None:
            return []
        self._held[slot] = max(0, self._held.get(slot, 0) - 1)
        return self._fill(slot) if slot in self.joined else []

    async def poll(self) -> list[Any]:
        """One look at the workers: moves for joins and leaves, and the futures submitted for them."""
        joined, left = await self.refresh()
        stranded = [slot for slot in self.queues.slots() if slot not in self.joined or slot in self.draining]
        takers = self._takers()
        if (stranded or joined) and len(self.queues):
            self._weighed()
        if stranded and takers:
            reason = "left" if left else "not joined" if any(s not in self.draining for s in stranded) else "retiring"
            self._moved(self.queues.orphan(stranded, takers, reason=reason))
        for slot in joined:
            self._moved(self.queues.steal(slot))
        if joined:  # Dask's tasks that named only workers that left run on the new ones
            from .dask_watch import run_stranded

            await self._client.run_on_scheduler(run_stranded)
        await self._note_absent()
        return self._fill_all()

    def drain(self, slot: str) -> None:
        """The worker of ``slot`` retires soon: it takes no new batch (the ones it holds finish
        there), and its queued batches go to the other workers now, or to the first that joins."""
        self.draining.add(slot)
        takers = self._takers()
        if takers and self.queues.queued(slot):
            self._weighed()
            self._moved(self.queues.orphan([slot], takers, reason="retiring"))

    def _takers(self) -> list[str]:
        """The joined slots that take work (not retiring)."""
        return [slot for slot in self.joined if slot not in self.draining]

    def worker_name(self, slot: str) -> str:
        """The Dask name of the worker that serves ``slot``."""
        return self._names.get(slot, slot)

    def waiting(self) -> int:
        """Batches queued and not submitted."""
        return len(self.queues)

    def stranded_for(self) -> float:
        """Seconds since no worker was there to run the queued batches (0 while one is)."""
        if self.joined or not len(self.queues):
            self._empty_since = None
            return 0.0
        if self._empty_since is None:
            self._empty_since = time.monotonic()
        return time.monotonic() - self._empty_since

    def _fill_all(self) -> list[Any]:
        return [future for slot in list(self.joined) for future in self._fill(slot)]

    def _fill(self, slot: str) -> list[Any]:
        room = 0 if slot in self.draining else window(self._threads.get(slot, 1)) - self._held.get(slot, 0)
        futures = []
        for batch in self.queues.take(slot, room) if room > 0 else ():
            future = self._submit(batch, slot)
            self._runs_on[future] = slot
            self._held[slot] = self._held.get(slot, 0) + 1
            futures.append(future)
        return futures

    def _moved(self, moves: list[Move]) -> None:
        for move in moves:
            self.moved += move.count
            self._emit(PartitionsMoved(move.source, move.target, move.count, move.reason))

    async def finish(self) -> None:
        """The run's work is done: the workers still missing never joined it (recorded, with why)."""
        await self._note_absent(now=True)

    async def _note_absent(self, *, now: bool = False) -> None:
        """Past the join wait (or ``now``), record (once) the workers that never joined and why."""
        if self._deadline is None or (time.monotonic() < self._deadline and not now):
            return
        self._deadline = None
        missing = sorted(set(self._names.values()) - self._seen)
        if not missing:
            return
        self.absent = missing
        try:
            self.absent_report = await self._report(set(self._seen))
        except Exception as exc:  # noqa: BLE001 - the report is a courtesy: the run goes on
            self.absent_report = f"(the backend could not say why: {type(exc).__name__}: {exc})"
        within = "the run" if now else f"{self._join_wait:g} s"
        self._emit(Notice(f"{len(missing)} worker(s) never joined within {within}: {', '.join(missing)}"
                          + (f"\n{self.absent_report}" if self.absent_report else ""), level="warning"))
