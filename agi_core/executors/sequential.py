"""Mode 0: every partition in this process, in the plan's order, dependencies first.

Nothing is started and nothing is forked, so a debugger's breakpoints in `App.work` work.

No result crosses a pickle boundary here: results and dependencies' results stay objects of this
process, which has every package the app declares (`app_python.check_in_process` fails the run
before any partition otherwise). The only pickles a mode-0 run reads are cache entries, which
workers in the app's own environment may have written: the run's cache loads them before the
executor starts, and one this process cannot load is not used, its partition computed again here.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .base import Executor, Outcome, settle
from .worker import PartitionRunner

if TYPE_CHECKING:
    from ..plan import GraphDriver, WorkPlan

__all__ = ["SequentialExecutor"]


class SequentialExecutor(Executor):
    """Runs the plan slot by slot, in each slot's order, a partition only after its dependencies."""

    name = "sequential"

    async def start(self, plan: WorkPlan) -> None:
        self._runner = PartitionRunner(self.job)

    async def execute(self, plan: WorkPlan, driver: GraphDriver) -> AsyncIterator[Outcome]:
        slot_of = plan.slot_of()
        rank = {pid: k for k, pid in enumerate(pid for ids in plan.assignment.values() for pid in ids)}
        parts = plan.partition_map()
        keys = self.context.keys
        ready: list[tuple[int, str]] = []

        def refill() -> None:
            for pid in driver.ready():
                heapq.heappush(ready, (rank[pid], pid))

        refill()
        while ready:
            _, pid = heapq.heappop(ready)
            await asyncio.sleep(0)  # a cancellation (Ctrl-C) lands between partitions
            ran = self._runner.run(parts[pid], slot_of[pid], driver.inputs(pid), key=keys.get(pid, ""))
            self._runner.flush()  # reported as stored: written (mode 0 is for debugging, not speed)
            for outcome in settle(driver, [ran], slot_of):
                yield outcome
            refill()

    async def close(self) -> None:
        pass
