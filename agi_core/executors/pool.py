"""The pool bit: one worker process per slot on this machine, each running the partitions the
plan gives it, in the plan's order, as soon as their dependencies are done.

One process per slot (rather than a shared pool) is what makes an edited plan run as edited and
lets the record say which slot ran what. Partitions travel in batches (see `slot_process`), so
the cost per partition is a few microseconds: 100,000 no-op partitions are a few hundred
messages per slot, not 100,000 round trips.
"""

from __future__ import annotations

import asyncio
import heapq
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..app import Partition
from .base import ExecutionContext, Executor, JobSpec, Outcome, settle, skipped_outcomes
from .slot_process import Batch, slot_main
from .wire import unpack_outcomes

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["PoolExecutor"]

# Partitions per message. A batch aims at `_BATCH_S` of work (measured on the slot's last batch):
# that bounds the latency of a Ctrl-C and what a slot's death fails, while tiny partitions travel
# thousands to a message (each message costs a round trip and, with the cache, a pack file).
_FIRST_BATCH = 256
_MAX_BATCH = 4096
_BATCH_S = 0.05


class _SlotProcess:
    """A worker process for one slot and the pipe to it. One batch is in flight at a time: the
    manager never blocks on a pipe the worker is not reading."""

    def __init__(self, name: str, job: JobSpec, context: Any, parts: dict[str, Partition], keys: dict[str, str]) -> None:
        self.name = name
        self.conn, child = context.Pipe()
        self.process = context.Process(target=slot_main, args=(child, job, name, os.getpid(), parts, keys),
                                       name=f"agi-slot-{name}", daemon=True)
        self.process.start()
        child.close()
        self.busy = False  # a batch was sent and its end not yet reported
        self.in_flight: dict[str, None] = {}  # partitions sent and not reported yet, in order
        self.dead = ""  # why it cannot run partitions any more
        self.batch_size = _FIRST_BATCH  # the next batch's size at most
        self._sent = (0.0, 0)  # when the batch in flight was sent, and its size

    def send(self, batch: Batch) -> None:
        self.in_flight = dict.fromkeys(pid for pid, _ in batch)
        self.busy = True
        self._sent = (time.monotonic(), len(batch))
        self.conn.send(batch)

    def batch_done(self) -> None:
        """The batch in flight ended: size the next one from how long this one took."""
        self.busy = False
        started, size = self._sent
        per_partition = (time.monotonic() - started) / max(1, size)
        self.batch_size = max(1, min(_MAX_BATCH, int(_BATCH_S / per_partition) if per_partition > 0 else _MAX_BATCH))

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    async def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 5)
        self.kill()


class _ReadyQueue:
    """A slot's ready partitions, in the plan's order. Ready partitions mostly arrive in rank
    order (all of a plan without dependencies at once): those go to a deque, popped in O(1);
    a partition that arrives out of order goes to a heap."""

    def __init__(self) -> None:
        self._run: deque[tuple[int, str]] = deque()
        self._heap: list[tuple[int, str]] = []

    def extend(self, ranked: list[tuple[int, str]]) -> None:
        for item in sorted(ranked):
            if not self._heap and (not self._run or item > self._run[-1]):
                self._run.append(item)
            else:
                heapq.heappush(self._heap, item)

    def pop(self) -> str:
        if self._heap and (not self._run or self._heap[0] < self._run[0]):
            return heapq.heappop(self._heap)[1]
        return self._run.popleft()[1]

    def __len__(self) -> int:
        return len(self._run) + len(self._heap)


def _process_context(python: Path | None) -> Any:
    # fork starts a slot in milliseconds with the app already imported; spawn where another
    # interpreter (the app's environment) must run the slots, or fork is unsafe.
    if python is None:
        return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    from .app_spawn import spawn_context

    return spawn_context(python)


class PoolExecutor(Executor):
    """Executor for the pool bit: slots are processes of this machine."""

    name = "pool"

    def __init__(self, context: ExecutionContext) -> None:
        super().__init__(context)
        self._slots: dict[str, _SlotProcess] = {}

    async def start(self, plan: WorkPlan) -> None:
        """Start the slot processes (before any thread starts in this process, so forks stay clean)."""
        context = _process_context(self.context.python)
        parts = plan.partition_map()
        keys = self.context.keys
        for slot in plan.slots:
            ids = plan.assignment.get(slot.name)
            if ids and slot.name not in self._slots:
                self._slots[slot.name] = _SlotProcess(slot.name, self.job, context, {pid: parts[pid] for pid in ids},
                                                      {pid: keys[pid] for pid in ids if pid in keys})

    async def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        await self.start(plan)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, list[Outcome] | None, bool]] = asyncio.Queue()
        slot_of = plan.slot_of()
        parts = plan.partition_map()
        rank = {pid: k for ids in plan.assignment.values() for k, pid in enumerate(ids)}
        ready = {name: _ReadyQueue() for name in self._slots}
        for name, slot in self._slots.items():
            loop.add_reader(slot.conn.fileno(), self._receive, slot, inbox)
        try:
            self._refill(driver, ready, rank, slot_of)
            for outcome in self._dispatch(driver, ready, parts, slot_of):
                yield outcome
            while not driver.finished:
                name, outcomes, batch_done = await inbox.get()
                slot = self._slots[name]
                if outcomes is None:  # the process died: what it had not reported fails
                    outcomes = [Outcome(pid, name, "failed", error=slot.dead) for pid in slot.in_flight]
                    batch_done = True
                for outcome in outcomes:
                    slot.in_flight.pop(outcome.id, None)
                if batch_done:  # keep the slot busy while this process records what it sent
                    slot.batch_done()
                    for outcome in self._dispatch(driver, ready, parts, slot_of):
                        yield outcome
                for outcome in settle(driver, outcomes, slot_of):
                    yield outcome
                self._refill(driver, ready, rank, slot_of)
                for outcome in self._dispatch(driver, ready, parts, slot_of):
                    yield outcome
        finally:
            for slot in self._slots.values():
                if not slot.conn.closed:
                    loop.remove_reader(slot.conn.fileno())

    @staticmethod
    def _refill(driver: GraphDriver, ready: dict[str, _ReadyQueue], rank: dict[str, int], slot_of: dict[str, str]) -> None:
        arrived: dict[str, list[tuple[int, str]]] = {}
        for pid in driver.ready():
            arrived.setdefault(slot_of[pid], []).append((rank[pid], pid))
        for slot, ranked in arrived.items():
            ready[slot].extend(ranked)

    def _dispatch(self, driver: GraphDriver, ready: dict[str, _ReadyQueue], parts: dict[str, Partition],
                  slot_of: dict[str, str]) -> list[Outcome]:
        """Send the next batch to every idle slot; partitions of a dead slot fail at once."""
        failed: list[Outcome] = []
        for name, queue in ready.items():
            slot = self._slots[name]
            if slot.busy or not queue:
                continue
            size = min(slot.batch_size, max(1, len(queue) // 4))
            ids = [queue.pop() for _ in range(min(size, len(queue)))]
            if slot.dead:
                for pid in ids:
                    failed.append(Outcome(pid, name, "failed", error=slot.dead))
                    skipped = driver.complete(pid, ok=False)
                    failed += skipped_outcomes(driver, skipped, slot_of)
                continue
            slot.send([(pid, driver.inputs(pid) if parts[pid].deps else {}) for pid in ids])
        return failed

    @staticmethod
    def _receive(slot: _SlotProcess, inbox: asyncio.Queue[tuple[str, list[Outcome] | None, bool]]) -> None:
        # An event-loop callback: an exception here would only be logged, and the run would wait
        # for these outcomes forever. Whatever cannot be read ends the slot's partitions instead.
        try:
            data, done = slot.conn.recv()
            outcomes = unpack_outcomes(data, "the manager")  # a result it cannot load fails its partition
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            slot.process.join(timeout=1)
            slot.dead = f"worker process of slot {slot.name} died (exit code {slot.process.exitcode})"
            inbox.put_nowait((slot.name, None, True))
            return
        except Exception as exc:  # noqa: BLE001 - a message the manager cannot read at all: the slot is lost
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            slot.kill()
            slot.dead = (f"the worker process of slot {slot.name} sent outcomes the manager cannot read "
                         f"({type(exc).__name__}: {exc}); it was stopped")
            inbox.put_nowait((slot.name, None, True))
            return
        inbox.put_nowait((slot.name, outcomes, done))

    async def close(self) -> None:
        """Stop the slot processes: politely when idle, by SIGKILL otherwise."""
        slots, self._slots = self._slots, {}
        await asyncio.gather(*(slot.stop() for slot in slots.values()), return_exceptions=True)

    def kill(self) -> None:
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.kill()
