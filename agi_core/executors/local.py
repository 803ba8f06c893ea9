"""Run a plan on this machine: in this process (mode 0) or one worker process per slot (pool bit).

Each slot runs the partitions the plan gives it, in the plan's order, skipping ahead only past a
partition whose dependencies are not done yet. One process per slot (rather than a shared pool)
is what makes an edited plan run as edited, and lets the record say which slot ran what.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ..app import Partition
from ..plan import WorkPlan
from .base import Executor, JobSpec, Outcome
from .worker import PartitionRunner

__all__ = ["LocalExecutor"]


class _Slot(Protocol):
    name: str

    async def run(self, part: Partition, deps: dict[str, Any]) -> Outcome: ...
    def kill(self) -> None: ...
    async def stop(self) -> None: ...


class _InProcessSlot:
    """Runs partitions right here, so breakpoints and debuggers work (mode 0)."""

    def __init__(self, name: str, job: JobSpec) -> None:
        self.name = name
        self.runner = PartitionRunner(job)

    async def run(self, part: Partition, deps: dict[str, Any]) -> Outcome:
        await asyncio.sleep(0)  # a cancellation (Ctrl-C) lands between partitions
        return self.runner.run(part, self.name, deps)

    def kill(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def _slot_main(conn: Connection, job: JobSpec, name: str) -> None:
    """Body of a slot process: load the app once, then run what the manager sends until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager handles Ctrl-C and stops us
    runner: PartitionRunner | None = None
    while (message := conn.recv()) is not None:
        part, deps = message
        try:
            runner = runner or PartitionRunner(job)
            outcome = runner.run(part, name, deps)
        except Exception:  # noqa: BLE001 - loading the app failed: report it as this partition's failure
            import traceback

            outcome = Outcome(part.id, name, "failed", error=traceback.format_exc())
        try:
            conn.send(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            outcome.status, outcome.result = "failed", None
            outcome.error = f"the result of partition '{part.id}' cannot be sent back: {type(exc).__name__}: {exc}"
            conn.send(outcome)


class _ProcessSlot:
    """A worker process for one slot, talked to over a pipe the event loop watches (no threads)."""

    def __init__(self, name: str, job: JobSpec, context: Any) -> None:
        self.name = name
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_slot_main, args=(child, job, name), name=f"agi-slot-{name}", daemon=True)
        self.process.start()
        child.close()

    async def run(self, part: Partition, deps: dict[str, Any]) -> Outcome:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Outcome] = loop.create_future()
        self.conn.send((part, deps))
        loop.add_reader(self.conn.fileno(), self._receive, answer, part)
        try:
            return await answer
        finally:
            loop.remove_reader(self.conn.fileno())

    def _receive(self, answer: asyncio.Future[Outcome], part: Partition) -> None:
        if answer.done():
            return
        try:
            answer.set_result(self.conn.recv())
        except (EOFError, OSError):
            self.process.join(timeout=1)
            answer.set_result(Outcome(part.id, self.name, "failed",
                                      error=f"worker process of slot {self.name} died (exit code {self.process.exitcode})"))

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


def _process_context() -> Any:
    # fork starts a slot in milliseconds with the app already imported; elsewhere spawn is the safe choice.
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


class LocalExecutor(Executor):
    """Executor for this machine. ``processes=False``: every partition in this process, in order."""

    def __init__(self, *, processes: bool) -> None:
        self.processes = processes
        self.name = "pool" if processes else "sequential"
        self._slots: dict[str, _Slot] = {}

    def start(self, plan: WorkPlan, job: JobSpec) -> None:
        """Start the slot workers (before any progress display, which runs a thread, so forks stay clean)."""
        if self._slots:
            return
        context = _process_context() if self.processes else None
        for slot in plan.slots:
            if not plan.assignment.get(slot.name):
                continue
            self._slots[slot.name] = _ProcessSlot(slot.name, job, context) if self.processes else _InProcessSlot(slot.name, job)

    async def execute(self, plan: WorkPlan, job: JobSpec) -> AsyncIterator[Outcome]:
        self.start(plan, job)
        parts = plan.partition_map()
        queues = {name: deque(ids) for name, ids in plan.assignment.items() if ids}
        results: dict[str, Any] = {}
        finished: set[str] = set()  # ok
        broken: set[str] = set()  # failed or skipped
        running: dict[asyncio.Task[Outcome], str] = {}
        busy: set[str] = set()
        try:
            while queues or running:
                skipped = self._dispatch(queues, parts, results, finished, broken, running, busy)
                for outcome in skipped:
                    yield outcome
                if skipped:
                    continue
                if not running:
                    stuck = sorted(pid for queue in queues.values() for pid in queue)
                    raise RuntimeError(f"no partition can start; waiting: {stuck[:10]}")  # unreachable for a checked plan
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    busy.discard(running.pop(task))
                    outcome = task.result()
                    if outcome.status == "ok":
                        finished.add(outcome.id)
                        results[outcome.id] = outcome.result
                    else:
                        broken.add(outcome.id)
                    yield outcome
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)

    def _dispatch(self, queues: dict[str, deque[str]], parts: dict[str, Partition], results: dict[str, Any],
                  finished: set[str], broken: set[str], running: dict[asyncio.Task[Outcome], str], busy: set[str]) -> list[Outcome]:
        """Start the next ready partition on every idle slot; return partitions skipped for a failed dependency."""
        skipped: list[Outcome] = []
        for slot, queue in list(queues.items()):
            if slot in busy:
                continue
            for pid in list(queue):
                deps = parts[pid].deps
                failed = [d for d in deps if d in broken]
                if failed:
                    queue.remove(pid)
                    broken.add(pid)
                    skipped.append(Outcome(pid, slot, "skipped", error=f"dependency {failed[0]} did not succeed"))
                    continue
                if all(d in finished for d in deps):
                    queue.remove(pid)
                    task = asyncio.ensure_future(self._slots[slot].run(parts[pid], {d: results[d] for d in deps}))
                    running[task] = slot
                    busy.add(slot)
                    break
            if not queue:
                del queues[slot]
        return skipped

    async def close(self) -> None:
        """Stop the slot workers: politely when idle, by SIGKILL otherwise (e.g. after Ctrl-C)."""
        slots, self._slots = self._slots, {}
        await asyncio.gather(*(slot.stop() for slot in slots.values()), return_exceptions=True)

    def kill(self) -> None:
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.kill()
