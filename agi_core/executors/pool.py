"""The pool bit: one worker process per slot on this machine, each running the partitions the
plan gives it, in the plan's order, as soon as their dependencies are done.

One process per slot (rather than a shared pool) is what makes an edited plan run as edited and
lets the record say which slot ran what. Partitions travel in batches (see `slot_process`), so
the cost per partition is a few microseconds: 100,000 no-op partitions are a few hundred
messages per slot, not 100,000 round trips.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..app import Partition
from ..base.events import Notice
from ..gpus import local_gpus
from .base import ExecutionContext, Executor, InFlight, Outcome, settle, skipped_outcomes
from .pool_queues import Placement, ReadyQueue
from .pool_slot import SlotProcess
from .slot_env import slot_envs
from .wire import unpack_outcomes

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["PoolExecutor"]

def _process_context(python: Path | None, *, rapids: bool = False) -> Any:
    # fork starts a slot in milliseconds with the app already imported; spawn where another
    # interpreter (the app's environment) must run the slots, or fork is unsafe: with the rapids
    # bit, CUDA does not run in a process forked from one that initialised it.
    if python is None and not rapids:
        return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    from .app_spawn import spawn_context

    return spawn_context(python or Path(sys.executable))


def _respawn_context(python: Path | None) -> Any:
    # A slot started again mid-run: threads run in this process by then (the record's heartbeat,
    # a progress display), and a fork would copy whatever lock one of them holds. Spawn, without
    # re-importing this process's __main__ (a user's script may start a run at module level).
    from .app_spawn import spawn_context

    return spawn_context(python or Path(sys.executable))


#: a slot whose process died is started again at most this many times; then its work moves
_MAX_RESPAWNS = 5

_Inbox = asyncio.Queue[tuple["SlotProcess", list[Outcome] | None, bool]]  # the process each message came from


class PoolExecutor(Executor):
    """Executor for the pool bit: slots are processes of this machine.

    A slot whose process dies (a crash, or stopped by the manager for a hang) is started again;
    the partition it died in runs again, on another slot where there is one, up to ``[cluster]
    retries`` times, then fails; partitions it had finished but not reported run again (counted
    as retries: they ran once); those it had not started run as if nothing happened.
    """

    name = "pool"

    def __init__(self, context: ExecutionContext) -> None:
        super().__init__(context)
        self._slots: dict[str, SlotProcess] = {}
        self._plan: WorkPlan | None = None  # what `start` was given: a process started again gets its slot's partitions
        self._home = Placement({})  # partition -> the slot the plan gave it (whose process has it), and its rank there
        self._assignment: dict[str, list[str]] = {}  # slot -> its partitions, in order
        self._lost: dict[str, int] = {}  # partition -> how often its process died while running it
        self._reruns: dict[str, int] = {}  # partition -> times it ran again after its process was lost
        self._respawns: dict[str, int] = {}  # slot -> times its process was started again
        self._inbox: _Inbox | None = None
        self._notices: list[str] = []
        self._envs: dict[str, dict[str, str]] = {}  # slot -> its process's GPU environment (rapids bit)

    async def start(self, plan: WorkPlan) -> None:
        """Start the slot processes (before any thread starts in this process, so forks stay clean)."""
        rapids = self.context.shape.gpu != "off"
        context = _process_context(self.context.python, rapids=rapids)
        if rapids:  # each slot its own GPU, or none, as the plan says (`slot_env`)
            self._envs = slot_envs(self.context.cluster.local_worker_map(), {s.name: s.capabilities for s in plan.slots},
                                   local_gpus())
        self._plan = plan
        self._home = Placement(plan.assignment)
        self._assignment = plan.assignment
        parts = plan.partition_map() if any(plan.assignment.get(s.name) and s.name not in self._slots for s in plan.slots) else {}
        for slot in plan.slots:
            ids = plan.assignment.get(slot.name)
            if ids and slot.name not in self._slots:
                self._slots[slot.name] = self._new_slot(slot.name, context, parts)

    def _new_slot(self, name: str, context: Any, parts: Mapping[str, Partition] | None = None) -> SlotProcess:
        """A process for slot ``name``, given its partitions. ``parts``: every partition by id,
        when the caller has the map (not kept: at 1,000,000 partitions it is 40 MB)."""
        ids = self._assignment.get(name, [])
        if parts is None:
            assert self._plan is not None
            mine = set(ids)
            own = {p.id: p for p in self._plan.partitions if p.id in mine}
        else:
            own = {pid: parts[pid] for pid in ids}
        keys = self.context.keys
        return SlotProcess(name, self.job, context, own, {pid: keys[pid] for pid in ids if pid in keys}, self._envs.get(name))

    async def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        await self.start(plan)
        loop = asyncio.get_running_loop()
        inbox: _Inbox = asyncio.Queue()
        self._inbox = inbox
        slot_of = self._home  # the plan's slot of each partition (`start`)
        ready = {name: ReadyQueue() for name in self._slots}
        for slot in self._slots.values():
            loop.add_reader(slot.conn.fileno(), self._receive, slot, inbox)
        try:
            self._refill(driver, ready)
            for outcome in self._dispatch(driver, ready, slot_of):
                yield outcome
            while not driver.finished:
                slot, outcomes, batch_done = await inbox.get()
                if outcomes is None:  # the process died or was stopped: start another, move its work
                    outcomes = self._after_death(slot, ready, loop, inbox)
                    batch_done = False
                for outcome in outcomes:
                    slot.in_flight.pop(outcome.id, None)
                    outcome.retries = self._reruns.get(outcome.id, 0)
                if batch_done:  # keep the slot busy while this process records what it sent
                    slot.batch_done()
                    for outcome in self._dispatch(driver, ready, slot_of):
                        yield outcome
                for outcome in settle(driver, outcomes, slot_of):
                    yield outcome
                self._refill(driver, ready)
                for outcome in self._dispatch(driver, ready, slot_of):
                    yield outcome
        finally:
            self._inbox = None
            for slot in self._slots.values():
                if not slot.conn.closed:
                    loop.remove_reader(slot.conn.fileno())

    def _after_death(self, slot: SlotProcess, ready: dict[str, ReadyQueue], loop: asyncio.AbstractEventLoop,
                     inbox: _Inbox) -> list[Outcome]:
        """A slot's process is gone: start another in its place (or give its work to the other
        slots), run again what it had not reported, and fail the partition it died in once that
        partition has used up its retries. Returns the outcomes of partitions that failed."""
        ran, current, unstarted = slot.lost()
        why = slot.dead
        if slot.stopped is not None and slot.stopped[0] == current:
            why = slot.stopped[1]
        failed: list[Outcome] = []
        again = list(ran)
        if current is not None:
            self._lost[current] = lost = self._lost.get(current, 0) + 1
            if lost > self.context.cluster.retries:
                tries = f"; it ran {lost} time{'s' if lost > 1 else ''}, [cluster] retries = {self.context.cluster.retries}"
                failed.append(Outcome(current, slot.name, "failed", host=_HOST, worker=f"{_HOST}:{slot.process.pid}",
                                      error=why + tries))
            else:
                again.append(current)
        for pid in again:
            self._reruns[pid] = self._reruns.get(pid, 0) + 1
        if current is not None and current in again and slot.stopped is None:  # a stop was announced by the watchdog
            self.context.emit(Notice(f"partition {current!r}: {why}; it runs again ({self._lost[current]} of "
                                     f"{self.context.cluster.retries} retries)", level="warning"))
        self._replace(slot, loop, inbox)
        queue = ready[slot.name]
        moved = [queue.pop() for _ in range(len(queue))] + again + unstarted
        targets = [name for name, other in self._slots.items() if not other.dead]
        if not targets:  # nothing left to run them on
            failed += [Outcome(pid, slot.name, "failed", error=f"not run: {why}; no slot is left to run it") for pid in moved]
            return failed
        # the partition it died in goes to another slot where there is one: it may be what kills a slot
        for k, pid in enumerate(moved):
            others = [name for name in targets if name != slot.name] if pid == current else []
            name = (others or targets)[k % len(others or targets)]
            ready[name].extend([(self._home.rank(pid), pid)])
        return failed

    def _replace(self, slot: SlotProcess, loop: asyncio.AbstractEventLoop, inbox: _Inbox) -> SlotProcess | None:
        """A new process for a slot whose process died, unless it died too often."""
        if not slot.conn.closed:
            loop.remove_reader(slot.conn.fileno())
        slot.kill(wait=0.1)  # a process stuck in the kernel (a dead NFS mount) may not go at once: do not wait
        if self._respawns.get(slot.name, 0) >= _MAX_RESPAWNS:
            return None
        self._respawns[slot.name] = self._respawns.get(slot.name, 0) + 1
        fresh = self._new_slot(slot.name, _respawn_context(self.context.python))
        fresh.batch_size = slot.batch_size
        self._slots[slot.name] = fresh
        loop.add_reader(fresh.conn.fileno(), self._receive, fresh, inbox)
        return fresh

    def _refill(self, driver: GraphDriver, ready: dict[str, ReadyQueue]) -> None:
        arrived: dict[str, list[tuple[int, str]]] = {}
        place = self._home.place
        for pid in driver.ready():
            home, rank = place(pid)
            arrived.setdefault(self._live(home), []).append((rank, pid))
        for slot, ranked in arrived.items():
            ready[slot].extend(ranked)

    def _live(self, name: str) -> str:
        """``name``, or a slot that runs its partitions now that its process is gone for good."""
        if not self._slots[name].dead:
            return name
        live = [other for other, slot in self._slots.items() if not slot.dead]
        return min(live, key=lambda other: len(self._slots[other].in_flight)) if live else name

    def _dispatch(self, driver: GraphDriver, ready: dict[str, ReadyQueue], slot_of: dict[str, str]) -> list[Outcome]:
        """Send the next batch to every idle slot; partitions of a dead slot fail at once."""
        failed: list[Outcome] = []
        keys = self.context.keys
        for name, queue in ready.items():
            slot = self._slots[name]
            if slot.full or not queue:
                continue
            size = min(slot.batch_size, max(1, len(queue) // 4))
            ids = [queue.pop() for _ in range(min(size, len(queue)))]
            if slot.dead:
                for pid in ids:
                    failed.append(Outcome(pid, name, "failed", error=f"not run: {slot.dead}"))
                    skipped = driver.complete(pid, ok=False)
                    failed += skipped_outcomes(driver, skipped, slot_of)
                continue
            part = driver.partition
            moved = self._home.strangers(ids, name)
            slot.send([(pid, driver.inputs(pid) if part(pid).deps else {},
                        (part(pid), keys.get(pid, "")) if moved and pid in moved else None) for pid in ids])
        return failed

    @staticmethod
    def _receive(slot: SlotProcess, inbox: _Inbox) -> None:
        # An event-loop callback: an exception here would only be logged, and the run would wait
        # for these outcomes forever. Whatever cannot be read ends the slot's partitions instead.
        try:
            data, done = slot.conn.recv()
            outcomes = unpack_outcomes(data, "the manager")  # a result it cannot load fails its partition
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            slot.process.join(timeout=1)
            slot.dead = (f"the worker process of slot {slot.name} (pid {slot.process.pid}) died "
                         f"(exit code {slot.process.exitcode}) while running it")
            inbox.put_nowait((slot, None, True))
            return
        except Exception as exc:  # noqa: BLE001 - a message the manager cannot read at all: the slot is lost
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            slot.kill()
            slot.dead = (f"the worker process of slot {slot.name} sent outcomes the manager cannot read "
                         f"({type(exc).__name__}: {exc}); it was stopped")
            inbox.put_nowait((slot, None, True))
            return
        inbox.put_nowait((slot, outcomes, done))

    async def in_flight(self) -> list[InFlight]:
        running = []
        for slot in self._slots.values():
            now = slot.running() if not slot.dead else None
            if now is not None:
                running.append(InFlight(now[0], slot.name, _HOST, slot.process.pid or 0, now[1]))
        return running

    async def stop_worker(self, item: InFlight, reason: str) -> None:
        """SIGKILL the slot's process (it works on a stopped one too) and handle it as a death at
        once: a process stuck in the kernel may not close its pipe for a long time."""
        slot = self._slots.get(item.slot)
        if slot is None or slot.dead or slot.process.pid != item.pid or self._inbox is None:
            return  # it moved on, or died, meanwhile
        slot.stopped = (item.id, reason)
        loop = asyncio.get_running_loop()
        if not slot.conn.closed:
            loop.remove_reader(slot.conn.fileno())
        if slot.process.is_alive():
            slot.process.kill()
        slot.dead = reason
        self._inbox.put_nowait((slot, None, True))

    async def retries(self) -> dict[str, int]:
        return {pid: count for pid, count in self._reruns.items() if count}

    async def close(self) -> None:
        """Stop the slot processes: politely when idle, by SIGKILL otherwise."""
        slots, self._slots = self._slots, {}
        await asyncio.gather(*(slot.stop() for slot in slots.values()), return_exceptions=True)

    def kill(self) -> None:
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.kill()


_HOST = socket.gethostname()
